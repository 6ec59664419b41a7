"""The server, over real HTTP against a running `seq2seq serve`, and its page in Chromium."""

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

MODEL = Path(__file__).parents[1] / "models" / "multi30k-de-en.pt"
SENTENCES = [
    "Ein Hund läuft durch den Park.",
    "Zwei Kinder spielen im Schnee.",
    "Eine Frau singt auf einer Bühne.",
    "Ein Mann fährt mit dem Fahrrad.",
]


class Echo:
    """A translator without a model: each text is its own translation; records the searches."""

    config = SimpleNamespace(
        data=SimpleNamespace(src="de", tgt="en"), search=SimpleNamespace(beam=5)
    )

    def __init__(self) -> None:
        self.searches: list[int] = []  # texts per search

    def translate_lines(self, texts, beam, nbest, batch_tokens):
        self.searches.append(len(texts))
        return [SimpleNamespace(texts=[t]) for t in texts]


class Server:
    """`seq2seq serve` in a child process on a free loopback port."""

    def __init__(self, *options: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "seq2seq", "serve", "-m", str(MODEL), "--threads", "1"]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), *options],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if get(self.url + "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not start")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, log = self.process.communicate(timeout=60)
        return self.process.returncode, log


def request(url: str, data: bytes | None = None, kind: str = "application/json"):
    """(status, JSON answer, headers) of one HTTP request."""
    headers = {"Content-Type": kind} if data is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=60) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def get(url: str):
    return request(url)


def post(server: Server, body) -> tuple[int, dict]:
    status, answer, _ = request(server.url + "/translate", json.dumps(body).encode())
    return status, answer


@pytest.fixture(scope="module")
def server():
    running = Server("--char-limit", "300", "--batch-limit", "8")
    yield running
    running.stop()


def test_translate_a_string_a_list_and_a_form(server):
    status, answer = post(server, {"q": SENTENCES[0], "source": "de", "target": "en"})
    assert status == 200 and "dog" in answer["translatedText"]
    status, answer = post(server, {"q": SENTENCES[:2], "source": "auto", "target": "en"})
    assert status == 200 and len(answer["translatedText"]) == 2
    assert answer["detectedLanguage"][0]["language"] == "de"
    form = urllib.parse.urlencode([("q", SENTENCES[0]), ("source", "de"), ("target", "en")])
    status, answer, _ = request(
        server.url + "/translate", form.encode(), "application/x-www-form-urlencoded"
    )
    assert status == 200 and "dog" in answer["translatedText"]


def test_alternatives_come_from_the_beam(server):
    status, answer = post(
        server, {"q": SENTENCES[0], "source": "de", "target": "en", "alternatives": 2}
    )
    assert status == 200 and 1 <= len(answer["alternatives"]) <= 2
    assert answer["translatedText"] not in answer["alternatives"]


def test_a_paragraph_keeps_its_sentences(server):
    status, answer = post(server, {"q": " ".join(SENTENCES[:3]), "source": "de", "target": "en"})
    assert status == 200 and answer["translatedText"].count(".") >= 3


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{bad json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"source": "de", "target": "en"}', 400, "missing q"),
        (b'{"q": 5, "source": "de", "target": "en"}', 400, "string or a list"),
        (b'{"q": "Hallo", "source": "fr", "target": "en"}', 400, "fr is not supported"),
        (b'{"q": "Hallo", "source": "de", "target": "es"}', 400, "es is not supported"),
        (b'{"q": "Hallo", "source": "de", "target": "en", "format": "xml"}', 400, "text or html"),
        (b'{"q": "Hallo", "format": "html", "alternatives": 2}', 400, "need format text"),
        (b'{"q": "Hallo", "source": "de", "target": "en", "alternatives": "x"}', 400, "whole"),
        (json.dumps({"q": "x" * 301}).encode(), 413, "the limit is 300"),
        (json.dumps({"q": ["Hallo"] * 9}).encode(), 413, "at most 8"),
    ],
)
def test_bad_requests_get_json_errors(server, body, status, message):
    code, answer, _ = request(server.url + "/translate", body)
    assert code == status and message in answer["error"]
    assert get(server.url + "/health")[0] == 200  # the server lives on


def test_languages_health_docs_and_unknown_paths(server):
    assert get(server.url + "/languages")[1] == [
        {"code": "de", "name": "German", "targets": ["en"]}
    ]
    health = get(server.url + "/health")[1]
    assert health["model"] == "multi30k-de-en" and health["source"] == "de"
    with urllib.request.urlopen(server.url + "/docs", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        assert b"Translate" in response.read()
    status, answer, _ = request(server.url + "/nope")
    assert status == 404 and "error" in answer


def test_html_keeps_its_markup_and_translates_its_text(server):
    html = '<p>Ein Hund läuft durch den Park.</p><p class="x"><b>Zwei Kinder</b> spielen.</p>'
    body = {"q": [html, "<br>"], "source": "de", "target": "en", "format": "html"}
    status, answer = post(server, body)
    assert status == 200
    page, empty = answer["translatedText"]
    assert page.startswith("<p>") and '</p><p class="x"><b>' in page and "dog" in page
    assert empty == "<br>"


def test_detect_and_frontend_settings_as_libretranslate_clients_ask(server):
    # clients such as GNOME's Dialect call /detect for "auto"; LibreTranslate's own page
    # and apps read /frontend/settings: one source language, so that is what is "detected"
    status, answer, _ = request(server.url + "/detect", json.dumps({"q": "Hallo"}).encode())
    assert status == 200 and answer == [{"confidence": 100.0, "language": "de"}]
    form = urllib.parse.urlencode([("q", "Hallo")]).encode()
    kind = "application/x-www-form-urlencoded"
    assert request(server.url + "/detect", form, kind)[1] == answer
    status, answer, _ = request(server.url + "/detect", b"{}")
    assert status == 400 and "missing q" in answer["error"]
    settings = get(server.url + "/frontend/settings")[1]
    assert settings["charLimit"] == 300 and settings["keyRequired"] is False
    assert settings["language"]["source"] == {"code": "de", "name": "German"}
    assert settings["language"]["target"]["code"] == "en"


def test_pages_of_other_origins_may_call_the_api(server):
    origin = {"Origin": "https://example.org"}
    preflight = urllib.request.Request(
        server.url + "/translate",
        method="OPTIONS",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    with urllib.request.urlopen(preflight, timeout=60) as answer:
        assert answer.status == 200
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    body = json.dumps({"q": SENTENCES[0], "source": "de", "target": "en"}).encode()
    call = urllib.request.Request(
        server.url + "/translate", body, {**origin, "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(call, timeout=60) as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "translatedText" in json.loads(answer.read())


def test_concurrent_requests_each_get_their_own_answer(server):
    alone = [post(server, {"q": s, "source": "de", "target": "en"})[1] for s in SENTENCES]
    answers = [None] * 16

    def ask(i: int) -> None:
        answers[i] = post(server, {"q": SENTENCES[i % 4], "source": "de", "target": "en"})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, (status, answer) in enumerate(answers):
        assert status == 200 and answer == alone[i % 4]


def test_a_port_in_use_is_refused_before_the_model_loads():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "seq2seq", "serve", "-m", "missing.pt"]
        result = subprocess.run(
            [*command, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr  # not "no such model file"


def test_a_full_queue_answers_503_with_retry_after():
    busy = Server("--max-queue", "1", "--batch-wait-ms", "0")
    results = []

    def ask() -> None:
        code, answer, headers = request(
            busy.url + "/translate", json.dumps({"q": SENTENCES * 2}).encode()
        )
        results.append((code, headers.get("Retry-After")))

    try:
        threads = [threading.Thread(target=ask) for _ in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        busy.stop()
    codes = {code for code, _ in results}
    assert codes <= {200, 503} and 503 in codes and 200 in codes
    assert all(retry == "1" for code, retry in results if code == 503)


def test_sigterm_answers_the_requests_in_flight_then_exits():
    server = Server()
    answer = {}

    def ask() -> None:
        answer["result"] = post(server, {"q": SENTENCES * 16, "source": "de", "target": "en"})

    thread = threading.Thread(target=ask)
    thread.start()
    time.sleep(0.2)
    code, log = server.stop()
    thread.join()
    assert answer["result"][0] == 200 and len(answer["result"][1]["translatedText"]) == 64
    assert code == 0, log
    assert log.index("POST /translate 200 64 sentences") < log.index("stopped")


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver")
def test_the_page_in_a_real_browser(server, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: "multi30k-de-en" in b.find_element(By.ID, "model").text)
        browser.find_element(By.ID, "source").send_keys(SENTENCES[0])
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: "dog" in b.find_element(By.ID, "output").text)
        browser.save_screenshot(str(tmp_path / "page.png"))
        source = browser.find_element(By.ID, "source")
        source.clear()  # more lines than --batch-limit texts: one text, its lines kept
        source.send_keys("\n".join(["Ein Hund.", "", "Zwei Kinder."] * 3))
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: "dog" in b.find_element(By.ID, "output").text)
        assert len(browser.find_element(By.ID, "output").text.split("\n")) == 9
        assert not browser.find_element(By.ID, "error").text
        source.clear()
        source.send_keys("x" * 301)
        browser.find_element(By.ID, "translate").click()
        wait.until(lambda b: "413" in b.find_element(By.ID, "error").text)
        assert "the limit is 300" in browser.find_element(By.ID, "error").text
        assert (tmp_path / "page.png").stat().st_size > 1000
    finally:
        browser.quit()


def test_an_unexpected_search_error_is_a_json_500_and_the_server_goes_on():
    from fastapi.testclient import TestClient

    from seq2seq.serve import create_app

    class Broken(Echo):
        calls = 0

        def translate_lines(self, texts, beam, nbest, batch_tokens):
            Broken.calls += 1
            if Broken.calls == 1:
                raise RuntimeError("a bug")
            return [SimpleNamespace(texts=[t.upper()]) for t in texts]

    with TestClient(create_app(Broken(), "broken"), raise_server_exceptions=False) as client:
        first = client.post("/translate", json={"q": "ein hund"})
        second = client.post("/translate", json={"q": "ein hund"})
    assert first.status_code == 500 and first.json() == {"error": "internal error: a bug"}
    assert second.status_code == 200 and second.json() == {"translatedText": "EIN HUND"}


def test_freed_heap_memory_goes_back_to_the_system_between_searches(monkeypatch):
    from fastapi.testclient import TestClient

    import seq2seq.serve as serve

    serve.release_free_memory()  # a no-op where the C library has no malloc_trim
    releases = []
    monkeypatch.setattr(serve, "release_free_memory", lambda: releases.append(1))
    monkeypatch.setattr(serve, "RELEASE_SECONDS", 3600.0)
    with TestClient(serve.create_app(Echo(), "echo")) as client:
        assert client.post("/translate", json={"q": "ein hund"}).status_code == 200
        assert not releases  # not before RELEASE_SECONDS have passed
        monkeypatch.setattr(serve, "RELEASE_SECONDS", 0.0)
        for _ in range(3):
            assert client.post("/translate", json={"q": "ein hund"}).status_code == 200
    assert len(releases) == 3


def test_a_batch_waits_for_as_many_requests_as_the_last_one_had():
    from seq2seq.serve import Batcher, ServeOptions

    async def scenario(echo: Echo) -> None:
        batcher = Batcher(echo, ServeOptions(batch_wait=3600.0))
        batcher.start()
        ask = batcher.translate
        # a lone request does not wait (the last search had none to wait for)
        assert (await asyncio.wait_for(ask(["a"], 1), 10))[0].texts == ["a"]
        # three queued together: one search takes them all
        await asyncio.wait_for(asyncio.gather(ask(["b"], 1), ask(["c"], 1), ask(["d"], 1)), 10)
        # two come, the third later: the search waits for it (not the hour of batch_wait)
        first = asyncio.gather(ask(["e"], 1), ask(["f"], 1))
        await asyncio.sleep(0.3)
        last = await asyncio.wait_for(asyncio.gather(first, ask(["g"], 1)), 10)
        assert [r[0].texts for r in last[0]] == [["e"], ["f"]] and last[1][0].texts == ["g"]
        await batcher.stop()

    echo = Echo()
    asyncio.run(scenario(echo))
    assert echo.searches == [1, 3, 3]
