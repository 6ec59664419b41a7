"""`seq2seq serve`: a LibreTranslate-compatible HTTP API and a web page, batching requests.

The model is loaded once. Requests that arrive together are merged into one
batched search: each request's texts go into a queue, a collector takes all
that wait and waits a few milliseconds for more (until as many requests as
the last search had, or a token budget), and one worker thread runs
the search off the event loop; each answer goes back to its own request.

API (LibreTranslate's shape): `POST /translate` (JSON or form: q, source,
target, format text or html (markup.py), alternatives), `POST /detect`,
`GET /languages`, `GET /frontend/settings`, `GET /health`, `GET /` (the page),
`GET /docs` (OpenAPI). Errors are `{"error": "..."}` with 400, 413 or 503 (with
Retry-After), never a 200. Any origin may call the API (CORS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from seq2seq.errors import MissingDependencyError, Seq2SeqError
from seq2seq.markup import Page
from seq2seq.translate import Translation, Translator, release_free_memory

try:
    from fastapi import FastAPI, Request
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.exceptions import HTTPException
except ImportError:  # the optional `serve` extra
    FastAPI = None

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "web" / "index.html"
NEEDS_EXTRA = "the server needs its extra: pip install 'seq2seq[serve]'"
# seconds between two returns of freed heap memory to the system (release_free_memory,
# 5-8 ms each with a bf16 model)
RELEASE_SECONDS = 1.0
LANGUAGE_NAMES = {
    "cs": "Czech",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fr": "French",
}


@dataclass
class ServeOptions:
    """Limits and batching of the server (the `seq2seq serve` options)."""

    beam: int | None = None  # None: the model's
    char_limit: int = 5000  # characters of all of a request's texts together
    batch_limit: int = 64  # texts in one request
    max_queue: int = 256  # requests waiting; more get 503
    batch_wait: float = 0.01  # seconds the collector waits at most for more requests
    batch_tokens: int = 6000  # source tokens x beam that one merged search may hold
    batching: bool = True  # False: one request at a time (for comparison)


class RequestError(Exception):
    """A request the server refuses; `status` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Job:
    """One request's texts waiting for the worker."""

    texts: list[str]
    nbest: int
    future: asyncio.Future
    tokens: int = 0  # a cheap size estimate for the batch budget
    results: list[Translation] = field(default_factory=list)


class Batcher:
    """Merges the jobs that arrive together into one search in a worker thread."""

    def __init__(self, translator: Translator, options: ServeOptions) -> None:
        self.translator, self.options = translator, options
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="search")
        self.task: asyncio.Task | None = None
        self.released = time.monotonic()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Finish the queued jobs, then stop."""
        while not self.queue.empty():
            await asyncio.sleep(0.01)
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.worker.shutdown(wait=True)

    async def translate(self, texts: list[str], nbest: int) -> list[Translation]:
        """The translations of one request's texts, searched with other requests' texts."""
        if self.queue.qsize() >= self.options.max_queue:
            raise RequestError(503, "the server is busy: too many requests waiting")
        job = Job(texts, nbest, asyncio.get_running_loop().create_future())
        job.tokens = sum(len(t) for t in texts) // 4 + len(texts)  # ~4 characters a piece
        await self.queue.put(job)
        return await job.future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        beam = self.options.beam or self.translator.config.search.beam
        budget = self.options.batch_tokens // beam
        # requests in the last search: under steady load its clients come back
        # together, so the wait ends when as many have come (measured: half the
        # idle time between searches at 16 clients) and a lone client never waits
        expected = 1
        while True:
            jobs = [await self.queue.get()]
            deadline = loop.time() + self.options.batch_wait
            while self.options.batching and sum(j.tokens for j in jobs) < budget:
                if not self.queue.empty():
                    jobs.append(self.queue.get_nowait())
                    continue
                if len(jobs) >= expected:
                    break
                try:
                    jobs.append(await asyncio.wait_for(self.queue.get(), deadline - loop.time()))
                except TimeoutError:
                    break
            expected = len(jobs)
            try:
                await loop.run_in_executor(self.worker, self._search, jobs)
            except Exception as error:  # a bug must not end the server; answer each request
                log.exception("search failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(job.results)

    def _search(self, jobs: list[Job]) -> None:
        """One batched search per n-best size (all requests of a size together)."""
        if time.monotonic() - self.released >= RELEASE_SECONDS:
            release_free_memory()
            self.released = time.monotonic()
        beam = self.options.beam
        for nbest in sorted({job.nbest for job in jobs}):
            group = [job for job in jobs if job.nbest == nbest]
            texts = [text for job in group for text in job.texts]
            results = self.translator.translate_lines(texts, beam, nbest, self.options.batch_tokens)
            start = 0
            for job in group:
                job.results = results[start : start + len(job.texts)]
                start += len(job.texts)


class RequestLog:
    """ASGI middleware: one log line per request (method, path, status, sentences, ms).

    Plain ASGI rather than `app.middleware("http")`, whose task group and
    streams per request cost more than the rest of the HTTP stack: 16 clients
    got 1,800 refusals a second through it, 5,100 without (measured), and a
    16-client server's worker waited 8.5 ms between two searches, now 5.3.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            log.info(
                "%s %s %d %d sentences %.0f ms",
                scope["method"],
                scope["path"],
                status[0],
                scope.get("sentences", 0),
                1000 * (time.perf_counter() - started),
            )


def create_app(translator: Translator, name: str, options: ServeOptions | None = None) -> FastAPI:
    """The ASGI application serving `translator`."""
    if FastAPI is None:
        raise MissingDependencyError(NEEDS_EXTRA)
    options = options or ServeOptions()
    src, tgt = translator.config.data.src, translator.config.data.tgt
    batcher = Batcher(translator, options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        log.info("serving %s (%s -> %s)", name, src, tgt)
        yield
        await batcher.stop()

    app = FastAPI(title="seq2seq", summary=f"{name}: {src} -> {tgt}", lifespan=lifespan)
    # any origin may call the API, as LibreTranslate allows: browser extensions and web
    # pages elsewhere are its clients, and the server keeps no cookies or credentials
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=86400,
    )

    app.add_middleware(RequestLog)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status == 503 else None
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        # the framework's own errors (404, 405) in the same shape
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        # a bug in search answers this request in the API's shape; the server goes on
        return JSONResponse({"error": f"internal error: {error}"}, status_code=500)

    @app.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        """Translate `q` (a string or a list of strings), LibreTranslate's request and answer."""
        body = await _read_body(request)
        texts, single = _texts(body, options)
        _check_languages(body, src, tgt)
        alternatives = _count(body.get("alternatives", 0), "alternatives")
        request.scope["sentences"] = len(texts)
        if body.get("format", "text") == "html":
            if alternatives:
                raise RequestError(400, "Invalid request: alternatives need format text")
            pages = [Page(text) for text in texts]
            inner = [text for page in pages for text in page.texts]
            done = iter(await batcher.translate(inner, nbest=1) if inner else [])
            answer = [page.join([next(done).texts[0] for _ in page.texts]) for page in pages]
        else:
            results = await batcher.translate(texts, nbest=alternatives + 1)
            answer = [r.texts[0] for r in results]
        reply = {"translatedText": answer[0] if single else answer}
        if alternatives:
            others = [r.texts[1:] for r in results]
            reply["alternatives"] = others[0] if single else others
        if body.get("source") == "auto":
            detected = {"confidence": 100.0, "language": src}  # the one language served
            reply["detectedLanguage"] = detected if single else [detected] * len(texts)
        return JSONResponse(reply)

    @app.post("/detect")
    async def detect(request: Request) -> list[dict]:
        """LibreTranslate's language detection: this server reads one source language,
        so every text is in it (clients ask before translating with source "auto")."""
        body = await _read_body(request)
        if not body.get("q"):
            raise RequestError(400, "Invalid request: missing q parameter")
        return [{"confidence": 100.0, "language": src}]

    @app.get("/frontend/settings")
    async def frontend_settings() -> dict:
        """LibreTranslate's settings for its page and apps: limits and the language pair."""
        return {
            "charLimit": options.char_limit,
            "frontendTimeout": 500,  # ms a page waits after typing before it translates
            "apiKeys": False,
            "keyRequired": False,
            "suggestions": False,
            "filesTranslation": False,
            "supportedFilesFormat": [],
            "language": {
                role: {"code": code, "name": LANGUAGE_NAMES.get(code, code)}
                for role, code in (("source", src), ("target", tgt))
            },
        }

    @app.get("/languages")
    async def languages() -> list[dict]:
        """The model's language pair, LibreTranslate's shape."""
        return [{"code": src, "name": LANGUAGE_NAMES.get(src, src), "targets": [tgt]}]

    @app.get("/health")
    async def health() -> dict:
        """Ready to translate; the model's name and languages (the page shows them)."""
        beam = options.beam or translator.config.search.beam
        return {"status": "ok", "model": name, "source": src, "target": tgt, "beam": beam}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html")

    return app


async def _read_body(request: Request) -> dict:
    """A JSON object or form fields; anything else is a 400."""
    kind = request.headers.get("content-type", "")
    if kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        body = {key: form.getlist(key) for key in form}
        return {
            key: values if key == "q" and len(values) > 1 else values[0]
            for key, values in body.items()
        }
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return body


def _texts(body: dict, options: ServeOptions) -> tuple[list[str], bool]:
    """The texts of `q` and whether `q` was a single string."""
    q = body.get("q")
    if q is None or q == "":
        raise RequestError(400, "Invalid request: missing q parameter")
    single = isinstance(q, str)
    texts = [q] if single else q
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError(400, "Invalid request: q must be a string or a list of strings")
    if len(texts) > options.batch_limit:
        raise RequestError(413, f"Invalid request: at most {options.batch_limit} texts a request")
    characters = sum(len(t) for t in texts)
    if characters > options.char_limit:
        raise RequestError(
            413, f"Invalid request: {characters} characters, the limit is {options.char_limit}"
        )
    if body.get("format", "text") not in ("text", "html"):
        raise RequestError(400, f"Invalid request: format {body.get('format')!r} (text or html)")
    return texts, single


def _check_languages(body: dict, src: str, tgt: str) -> None:
    source, target = body.get("source", src), body.get("target", tgt)
    if source not in (src, "auto"):
        raise RequestError(400, f"{source} is not supported: this model translates {src} to {tgt}")
    if target != tgt:
        raise RequestError(400, f"{target} is not supported: this model translates {src} to {tgt}")


def _count(value, name: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise RequestError(400, f"Invalid request: {name} must be a whole number") from None
    if not 0 <= count <= 10:
        raise RequestError(400, f"Invalid request: {name} must be between 0 and 10")
    return count


def check_address(host: str, port: int) -> None:
    """Refuse, before the model is loaded, an address the server could not listen on.

    Raises:
        Seq2SeqError: the port is in use or the host is not this machine's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise Seq2SeqError(
            f"cannot listen on {host}:{port}: {error.strerror or error} (see --host, --port)"
        ) from None


def serve(translator: Translator, name: str, host: str, port: int, options: ServeOptions) -> None:
    """Run the server until SIGINT/SIGTERM; requests in flight are answered first."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError(NEEDS_EXTRA) from None
    app = create_app(translator, name, options)
    # uvicorn answers the requests in flight, then raises the signal again for the
    # handler it found: a no-op one, so that a SIGTERM stop exits with status 0
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
    log.info("stopped")
