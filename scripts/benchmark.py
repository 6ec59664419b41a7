"""Benchmarks behind the README's results table.

    python scripts/benchmark.py prepare   [--runs 3] [--scale 5000000]
    python scripts/benchmark.py cells     [--runs 5]
    python scripts/benchmark.py train     [--preset P] [--set K=V ...] [--steps 50] [--runs 3]
    python scripts/benchmark.py translate [--model M] [--runs 3]
    python scripts/benchmark.py stream    [--src S --tgt T] [--every 10]
    python scripts/benchmark.py phrases   [--model M] [--table T] [--runs 3] [--lines 1e6 1e7]
    python scripts/benchmark.py ensemble  --model A --model B [...]
    python scripts/benchmark.py typed     [--model M] [--sets corpus/split ...] [--beam 5]
    python scripts/benchmark.py serve     [--model M] [--clients 1 4 16 64] [--requests 200]
                                          [--dtype bf16] [--ceiling 3 12 48 96]
    python scripts/benchmark.py study     [--budget 12] [--preset P] [--set K=V ...]
    python scripts/benchmark.py time-to-bleu [--minutes 12] [--preset P] [--set K=V ...]

Every number is the median of several runs; the machine and the settings are
printed first. Commands that run the `seq2seq` CLI run in a child process so
that its peak memory (max RSS) can be read from the kernel.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEQ2SEQ_DATA", ROOT.parent / "shared" / "data"))
# this checkout's package, not the installed one: a copy of an older commit measures that commit
sys.path.insert(0, str(ROOT))


# CPU features that decide which bf16 and int8 paths are fast
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def machine() -> str:
    cpu, flags = "unknown CPU", set()
    if Path("/proc/cpuinfo").is_file():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    gpu = f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{cpu}, {os.cpu_count()} cores, flags: {' '.join(f for f in FLAGS if f in flags)}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}{gpu}"
    )


def run_child(command: list[str], **kwargs) -> tuple[float, float]:
    """Run a command; returns (wall seconds, peak RSS in MiB) of that child alone."""
    started = time.perf_counter()
    process = subprocess.Popen(command, **kwargs)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def median_child(command: list[str], runs: int, **kwargs) -> tuple[float, float]:
    results = [run_child(command, **kwargs) for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def read_gzip_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.readlines()


def seq2seq(*args: str) -> list[str]:
    """This checkout's `seq2seq` command. (`python -m seq2seq` would run the package in the
    working directory, or else the installed one, whichever checkout this script is in.)"""
    run = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from seq2seq.cli import main; "
    return [sys.executable, "-c", run + "sys.exit(main(sys.argv[1:]))", *args]


# ------------------------------------------------------------------ prepare


def bench_prepare(args: argparse.Namespace) -> None:
    out = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    corpora = [("multi30k", "de", "en", 29000), ("tatoeba-fr-en", "fr", "en", 163919 + 1558 + 1653)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    for name, src, tgt, pairs in corpora:
        seconds, rss = median_child(
            seq2seq(
                "prepare", str(DATA / name), "--src", src, "--tgt", tgt, "--out", str(out / name)
            ),
            args.runs,
            **quiet,
        )
        print(
            f"prepare {name}: {pairs} pairs, {seconds:.1f} s, {pairs / seconds:,.0f} pairs/s, "
            f"peak {rss:,.0f} MiB (median of {args.runs})"
        )
    if args.scale:
        big = out / "big"
        big.mkdir()
        lines = {
            lang: read_gzip_lines(DATA / "tatoeba-fr-en" / f"train.{lang}.gz")
            for lang in ("fr", "en")
        }
        for lang in ("fr", "en"):
            with (big / f"train.{lang}").open("w", encoding="utf-8") as f:
                for i in range(args.scale):
                    f.write(lines[lang][i % len(lines[lang])])
        seconds, rss = run_child(
            seq2seq("prepare", str(big), "--src", "fr", "--tgt", "en", "--out", str(out / "b")),
            **quiet,
        )
        print(
            f"prepare {args.scale:,} pairs (tatoeba repeated): {seconds:.0f} s, "
            f"{args.scale / seconds:,.0f} pairs/s, peak {rss:,.0f} MiB (one run)"
        )


# ------------------------------------------------------------------ cells


def bench_cells(args: argparse.Namespace) -> None:
    from seq2seq.cells import CELL_NAMES, make_recurrent_layer

    batch, steps, size = 64, 30, 256
    print(
        f"one layer, batch {batch}, {steps} steps, input = hidden = {size}, "
        f"forward + backward, median of {args.runs}"
    )
    x = torch.randn(batch, steps, size)
    lengths = torch.full((batch,), steps)
    for name in CELL_NAMES:
        layer = make_recurrent_layer(name, size, size, layers=1, bidirectional=False, dropout=0.0)
        params = sum(p.numel() for p in layer.parameters())
        times = []
        for _ in range(args.runs + 1):  # the first run warms up
            started = time.perf_counter()
            outputs, _ = layer(x, lengths)
            outputs.sum().backward()
            times.append(time.perf_counter() - started)
        ms = statistics.median(times[1:]) * 1000
        print(f"  {name:16s} {params:>9,} parameters  {ms:7.1f} ms")


# ------------------------------------------------------------------ train


def ensure_prepared(config) -> None:
    """Prepare Multi30k where a fresh clone has no prepared folder yet."""
    if (Path(config.data.dir) / "stats.json").is_file():
        return
    if Path(config.data.dir).name != "multi30k-de-en" or not (DATA / "multi30k").is_dir():
        raise SystemExit(f"{config.data.dir}: not prepared; run seq2seq prepare first")
    print(f"preparing {config.data.dir} from {DATA / 'multi30k'}")
    command = seq2seq("prepare", str(DATA / "multi30k"), "--src", "de", "--tgt", "en")
    run_child([*command, "--out", config.data.dir], stdout=subprocess.DEVNULL)


def bench_train(args: argparse.Namespace) -> None:
    from seq2seq.config import load_config

    config = load_config(args.preset, args.set)
    ensure_prepared(config)
    parameters, flops = model_cost(config)
    print(
        f"preset {args.preset} {' '.join(args.set)}: {parameters:,} parameters, "
        f"{args.steps} steps per run, median of {args.runs}; {flops / 1e6:.1f} MFLOP per target "
        "token (forward + backward, counted by torch.utils.flop_counter)"
    )
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    device = config.train.device
    size = 2048 if device == "cpu" else 8192  # a GPU needs a larger product to run near its peak
    for precision in args.precision:
        dtype, rates, steady_rates = dtypes[precision], [], []
        peaks = [gemm_gflops(dtype, size=size, device=device)]
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                overrides = [
                    *args.set,
                    f"train.max_steps={args.steps}",
                    "train.valid_every=100000",
                    "train.valid_sentences=1",
                    f"train.precision={precision}",
                    f"train.seed={run + 1}",
                ]
                command = seq2seq("train", args.preset, "--run-dir", tmp)
                for override in overrides:
                    command += ["--set", override]
                run_child(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                records = [json.loads(x) for x in Path(tmp, "log.jsonl").read_text().splitlines()]
                train = [r for r in records if r["type"] == "train"]
                rates.append(train[-1]["tokens_per_s"])
                if len(train) > 1:  # after the first record: warmed up, as Joey NMT's log lines
                    tokens, seconds = (
                        train[-1][k] - train[0][k] for k in ("target_tokens", "train_seconds")
                    )
                    steady_rates.append(tokens / seconds)
        rate = statistics.median(rates)
        # measured before and after the runs, the higher taken: one measurement alone fell
        # to 437 GFLOP/s in a slow moment where 789-869 was usual (EPYC, 2026-11-30)
        peaks.append(gemm_gflops(dtype, size=size, device=device))
        peak = max(peaks)
        print(
            f"  {precision}: {rate:,.0f} target tokens/s, {rate * flops / 1e9:.1f} GFLOP/s = "
            f"{100 * rate * flops / 1e9 / peak:.0f}% of this machine's {precision} GEMM peak "
            f"({peak:.0f} GFLOP/s; {peaks[0]:.0f} before the runs, {peaks[1]:.0f} after); "
            f"an epoch of 442,896 target tokens in {442_896 / rate:.0f} s"
        )
        if steady_rates:
            steady = statistics.median(steady_rates)
            print(
                f"    after step {train[0]['step']} (warmed up): {steady:,.0f} target tokens/s, "
                f"{100 * steady * flops / 1e9 / peak:.0f}% of that peak"
            )
        if dtype == torch.float32 and device == "cpu":
            onednn = gemm_gflops(dtype, packed=True)
            print(
                f"    oneDNN's fp32 products: {onednn:.0f} GFLOP/s "
                f"({100 * rate * flops / 1e9 / onednn:.0f}% of that; training runs torch's own)"
            )


def gemm_gflops(
    dtype: torch.dtype, size: int = 2048, runs: int = 5, packed=False, device: str = "cpu"
) -> float:
    """GFLOP/s of a size x size matrix product on this process's threads, median of runs:
    torch's own (`a @ b`), or with `packed` oneDNN's, as search runs it (`PackedLinear`; on
    AMD CPUs torch's float32 products are MKL's AVX2 kernels, oneDNN's AVX-512). On a GPU
    float32 as torch runs it by default (no TF32)."""
    from seq2seq.onednn import PackedLinear

    gpu = device != "cpu"
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    product = functools.partial(torch.matmul, a, b)
    if packed:
        product = functools.partial(PackedLinear(b.t().contiguous(), None), a)
    product()  # warm-up
    seconds = []
    for _ in range(runs):
        if gpu:
            torch.cuda.synchronize()
        started = time.perf_counter()
        product()
        if gpu:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / statistics.median(seconds) / 1e9


def model_cost(config, batches: int = 8) -> tuple[int, float]:
    """Parameters, and forward + backward FLOPs per target token over training batches
    as the trainer makes them (length-sorted, so the padding is counted as training pays)."""
    from torch.utils.flop_counter import FlopCounterMode

    from seq2seq.data import collate, make_batches
    from seq2seq.model import build_model
    from seq2seq.prepare import load_tokenizers
    from seq2seq.train import load_corpus

    src_tok, tgt_tok, _ = load_tokenizers(config.data.dir)
    corpus = load_corpus(config, src_tok, tgt_tok)
    model = build_model(config.model, src_tok.vocab_size, tgt_tok.vocab_size)
    lengths = [[len(ids) + 1 for ids in side] for side in (corpus.src, corpus.tgt)]
    epoch = make_batches(*lengths, config.train.batch_tokens, config.train.seed, 0)
    flops = tokens = 0
    for indices in epoch[:batches]:
        batch = collate([corpus.src[i] for i in indices], [corpus.tgt[i] for i in indices])
        with FlopCounterMode(display=False) as counter:
            model(batch, 0.0).backward()
        flops += counter.get_total_flops()
        tokens += sum(lengths[1][i] for i in indices)
    return sum(p.numel() for p in model.parameters()), flops / tokens


# ------------------------------------------------------------------ translate


def timed_translation(
    translator, src: list[str], beam: int | None, runs: int
) -> tuple[float, list[str]]:
    """Median seconds of `runs` translations of `src` (beam None: the model's), and the best
    hypotheses."""
    times, hyps = [], []
    for _ in range(runs):
        started = time.perf_counter()
        hyps = [t.texts[0] for t in translator.translate(src, beam=beam)]
        times.append(time.perf_counter() - started)
    return statistics.median(times), hyps


def bench_translate(args: argparse.Namespace) -> None:
    from seq2seq.checkpoint import export_model
    from seq2seq.data import read_lines
    from seq2seq.evaluate import score_corpus
    from seq2seq.translate import Translator

    torch.set_num_threads(args.threads)
    src = list(read_lines(args.src))
    ref = list(read_lines(args.ref))
    print(
        f"model {args.model}, {len(src)} sentences, {args.device}, {args.threads} threads, "
        f"median of {args.runs}; "
        "bf16 is fast with avx512_bf16 or amx_bf16, int8 with avx512_vnni or amx_int8; "
        "a model with a shortlist runs with it and without it, alternating"
    )
    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.pt"
        export_model(args.model, int8, half=False, metrics={}, int8=True)
        variants = [
            ("fp32", Translator.from_file(args.model, args.device)),
            ("bf16", Translator.from_file(args.model, args.device, dtype="bf16")),
        ]
        if args.device == "cpu":  # dynamic int8 quantization runs on CPUs only
            variants.append(("int8", Translator.from_file(int8)))
        for name, translator in variants:
            modes = {"": translator.shortlist}
            if translator.shortlist:
                modes = {" shortlist": translator.shortlist, " whole vocabulary": None}
            for beam in (1, 5):
                times, hyps = {mode: [] for mode in modes}, {}
                for _ in range(args.runs):
                    for mode, shortlist in modes.items():
                        translator.shortlist = shortlist
                        seconds, hyps[mode] = timed_translation(translator, src, beam, 1)
                        times[mode].append(seconds)
                for mode in modes:
                    seconds, scores = statistics.median(times[mode]), score_corpus(hyps[mode], ref)
                    print(
                        f"  {name}{mode} beam {beam}: {seconds:.2f} s, "
                        f"{len(src) / seconds:.0f} sentences/s, "
                        f"BLEU {scores['bleu']} chrF {scores['chrf']}"
                    )
    print(f"  {scores['bleu_signature']}")


def sampled_child(command: list[str], every: float) -> tuple[float, list[float]]:
    """Run a command; returns its wall seconds and its RSS (MiB) every `every` seconds."""
    started, samples = time.perf_counter(), []
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            process.wait(timeout=every)
            break
        except subprocess.TimeoutExpired:
            samples.append(rss_mib(process.pid))
    if process.returncode:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return time.perf_counter() - started, samples


def bench_stream(args: argparse.Namespace) -> None:
    """Memory of the streaming commands over a long file: flat, or rising with the input."""
    if not (args.src.is_file() and args.tgt.is_file()):
        raise SystemExit(
            f"{args.src} or {args.tgt} missing: prepare data/de-en first (README, the default "
            "model's commands) or pass --src and --tgt"
        )
    with args.src.open(encoding="utf-8") as f:
        lines = sum(1 for _ in f)
    threads = ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out")
        for name, command in (
            ("translate --beam 1", ["translate", "--beam", "1", "--input", str(args.src)]),
            ("score", ["score", "--src", str(args.src), "--tgt", str(args.tgt)]),
        ):
            command = seq2seq(*command, "-m", args.model, "--output", out, "--force", *threads)
            seconds, samples = sampled_child(command, args.every)
            print(
                f"{name}: {lines:,} lines in {seconds:.0f} s ({lines / seconds:,.0f} lines/s); "
                f"RSS every {args.every:g} s (MiB): {' '.join(f'{s:.0f}' for s in samples)}"
            )
            if not samples:
                continue  # done before the first reading
            later = samples[len(samples) // 4 :]  # after oneDNN's first kernels
            print(
                f"  first {samples[0]:.0f}, last {samples[-1]:.0f}, "
                f"after the first quarter {min(later):.0f}-{max(later):.0f} MiB"
            )


def bench_ensemble(args: argparse.Namespace) -> None:
    """Each model alone, then all of them as one ensemble, on the same sentences."""
    from seq2seq.data import read_lines
    from seq2seq.evaluate import score_corpus
    from seq2seq.translate import Translator

    torch.set_num_threads(args.threads)
    src, ref = list(read_lines(args.src)), list(read_lines(args.ref))
    print(f"{len(src)} sentences of {args.src}, {args.threads} threads, {args.dtype}, one run each")
    variants = [(model, [model]) for model in args.model] + [("ensemble", args.model)]
    for name, paths in variants:
        translator = Translator.from_files(paths, dtype=args.dtype)
        for beam in (1, 5):
            seconds, hyps = timed_translation(translator, src, beam, runs=1)
            print(f"  {name} beam {beam}: BLEU {score_corpus(hyps, ref)['bleu']}, {seconds:.1f} s")


def bench_typed(args: argparse.Namespace) -> None:
    """Text as people type it: the dev and test sets as they are, without their final
    punctuation, with the first word in lower case, all in lower case, with ä, ö, ü, ß
    spelled out, and in capitals (typed_copies.FORMS), each searched as typed and made like
    the training text first (`unseen.fit`). The references lose their final punctuation
    with the sources, and are in capitals with them."""
    from typed_copies import FORMS

    from seq2seq import translate
    from seq2seq.evaluate import score_corpus
    from seq2seq.translate import Translator
    from seq2seq.unseen import Typed

    torch.set_num_threads(args.threads)
    translator = Translator.from_file(args.model)
    print(f"model {args.model}, beam {args.beam}, {args.threads} threads, one run each")
    fit = translate.fit
    forms = {"as they are": (lambda s: s, lambda r: r), **FORMS}
    for name in args.sets:
        src, ref = (read_gzip_lines(DATA / f"{name}.{lang}.gz") for lang in ("de", "en"))
        src, ref = [s.strip() for s in src], [r.strip() for r in ref]
        for form, (typed, expected) in forms.items():
            sources, refs = [typed(s) for s in src], [expected(r) for r in ref]
            scores = {}
            for way, fitting in (("as typed", lambda text, *_: (text, Typed())), ("fit", fit)):
                translate.fit = fitting
                hyps = [t.texts[0] for t in translator.translate(sources, beam=args.beam)]
                scores[way] = score_corpus(hyps, refs)["bleu"]
            translate.fit = fit
            print(
                f"  {name}, {form}: BLEU searched as typed {scores['as typed']}, "
                f"made like the training text {scores['fit']}"
            )


# ------------------------------------------------------------------ serve


def start_server(model: str, port: int, *options: str) -> subprocess.Popen:
    import urllib.request

    command = seq2seq("serve", "-m", model, "--port", str(port), "--threads", "2", *options)
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def load(port: int, requests: list[list[str]], clients: int, on_done=None) -> dict:
    """Send `requests` from `clients` threads (keep-alive connections); latencies and errors."""
    import http.client
    import threading

    latencies, errors, sentences = [], [0], [0]
    lock = threading.Lock()
    todo = iter(range(len(requests)))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(todo, None)
            if index is None:
                break
            body = json.dumps({"q": requests[index], "source": "de", "target": "en"})
            started = time.perf_counter()
            try:
                connection.request("POST", "/translate", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                latencies.append(time.perf_counter() - started)
                errors[0] += not ok
                sentences[0] += len(requests[index]) if ok else 0
                if on_done:
                    on_done(len(latencies))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "sentences/s": sentences[0] / seconds,
        "p50": quantiles[49],
        "p95": quantiles[94],
        "p99": quantiles[98],
        "errors": errors[0],
    }


def search_ceiling(model: str, dtype: str, sentences: list[str], sizes: list[int]) -> None:
    """Offline sentences/s of one search over n random sentences (median of 10), 2 threads:
    the ratio of a merged batch's size to a single request's bounds what batching can gain."""
    import random

    from seq2seq.translate import Translator

    torch.set_num_threads(2)
    translator = Translator.from_file(model, dtype=dtype)
    rng = random.Random(2)
    print(f"search ceiling: {model} ({dtype}), beam from the model, no server")
    for size in sizes:
        # a new random batch each time; the first two warm up
        batches = [rng.sample(sentences, size) for _ in range(12)]
        seconds = [timed_translation(translator, batch, None, 1)[0] for batch in batches]
        rate = size / statistics.median(seconds[2:])
        print(f"  {size:3d} sentences per search: {rate:6.1f} sentences/s")


def bench_serve(args: argparse.Namespace) -> None:
    import random

    from seq2seq.data import read_lines

    sentences = list(read_lines(args.src))
    rng = random.Random(1)

    def make(count: int) -> list[list[str]]:
        requests = []
        for _ in range(count):
            size = rng.randint(1, 5)
            start = rng.randrange(len(sentences) - size)
            requests.append(sentences[start : start + size])
        return requests

    if args.ceiling:
        search_ceiling(args.model, args.dtype, sentences, args.ceiling)
        if not args.clients and not args.long:
            return
    print(
        f"model {args.model} ({args.dtype}), beam from the model, requests of 1-5 test_2016 "
        "sentences, "
        f"{args.requests} requests a run, {args.runs} runs per client count (batching on and off "
        "alternating), 2 server threads, clients on the same machine"
    )
    # both servers run at once and the loads alternate (each first in every other run), so
    # that each ratio compares the two in the same phase of the machine (its speed drifts
    # by minutes, and at 1 client the first of a pair measured up to 10 % slower)
    servers: dict[bool, tuple[int, subprocess.Popen]] = {}
    try:
        for batching in (True, False):
            port = 5400 + batching
            options = ["--dtype", args.dtype, *([] if batching else ["--no-batching"])]
            servers[batching] = port, start_server(args.model, port, *options)
            load(port, make(20), 4)  # warm up
        for clients in args.clients:
            rates: dict[bool, list[float]] = {True: [], False: []}
            for run in range(args.runs):
                requests = make(args.requests)  # the same requests for both servers
                order = list(servers.items())[:: 1 if run % 2 == 0 else -1]  # who goes first
                for batching, (port, process) in order:
                    result = load(port, requests, clients)
                    rates[batching].append(result["sentences/s"])
                    print(
                        f"  batching {'on ' if batching else 'off'} {clients:3d} clients: "
                        f"{result['sentences/s']:6.1f} sentences/s, p50 {result['p50']:.2f} s, "
                        f"p95 {result['p95']:.2f} s, p99 {result['p99']:.2f} s, "
                        f"{result['errors']} errors, peak RSS "
                        f"{rss_mib(process.pid, 'VmHWM'):.0f} MiB"
                    )
            on, off = (statistics.median(rates[b]) for b in (True, False))
            print(
                f"  {clients} clients, median of {args.runs}: {on:.1f} against {off:.1f} "
                f"sentences/s one request at a time, {on / off:.2f}x"
            )
        if args.long:
            port, process = servers[True]
            samples: list[float] = []
            result = load(
                port,
                make(args.long),
                16,
                lambda done: samples.append(rss_mib(process.pid)) if done % 1000 == 0 else None,
            )
            print(
                f"  {args.long:,} requests from 16 clients: {result['errors']} errors, "
                f"RSS every 1,000 requests (MiB): {' '.join(f'{x:.0f}' for x in samples)}; "
                f"last / first {samples[-1] / samples[0]:.3f}"
            )
    finally:
        for _, process in servers.values():
            process.send_signal(2)
            process.wait(timeout=60)


def bench_time_to_bleu(args: argparse.Namespace) -> None:
    """Train the preset for N minutes of training, then its test BLEU with beam 5."""
    from seq2seq.config import load_config
    from seq2seq.plots import read_log

    if args.average == 1:
        raise SystemExit("--average: 2 or more checkpoints (0: none)")
    ensure_prepared(load_config(args.preset, args.set))
    overrides = [*args.set, f"train.max_minutes={args.minutes}"]
    if args.average:  # a checkpoint every 100 steps (unless --set says otherwise), enough kept
        kept = f"train.keep_checkpoints={args.average}"
        overrides = ["train.checkpoint_every=100", kept, *overrides]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        settings = [x for o in overrides for x in ("--set", o)]
        call("train", args.preset, "--run-dir", str(run), *settings)
        test = beam5_bleu(run / "model.pt")
        if args.average:
            average = str(run / "average.pt")
            call("average", str(run), "--last", str(args.average), "-o", average)
            averaged = beam5_bleu(average)
        records = read_log(run)
    train = [r for r in records if r.get("type") == "train"]
    valid = [r for r in records if r.get("type") == "valid" and "bleu" in r]
    print(
        f"preset {args.preset} {' '.join(args.set)}: {args.minutes} training minutes, "
        f"{records[-1]['step']} steps, {train[-1]['tokens_per_s'] if train else '-'} target "
        f"tokens/s; best dev BLEU {max(r['bleu'] for r in valid)}; test BLEU beam 5 {test}"
    )
    if args.average:
        print(f"  the mean of the last {args.average} checkpoints: test BLEU {averaged}")


# ------------------------------------------------------------------ study

# The gated-unit study: name -> (preset suffix, overrides). Same data, seed and budget.
STUDY = {
    "gru": ("attention", ["model.cell=gru"]),
    "gru-seed2": ("attention", ["model.cell=gru", "train.seed=2"]),
    "gru_reset_after": ("attention", []),
    "gru_reset_after-seed2": ("attention", ["train.seed=2"]),
    "gru1": ("attention", ["model.cell=gru1"]),
    "gru2": ("attention", ["model.cell=gru2"]),
    "gru3": ("attention", ["model.cell=gru3"]),
    "lstm": ("attention", ["model.cell=lstm"]),
    "tanh": ("attention", ["model.cell=tanh"]),
    "uni-1-layer": ("attention", ["model.bidirectional=false"]),
    "bi-2-layers": ("attention", ["model.layers=2"]),
    "context-rnn": ("context", ["model.decoder=context"]),
    "context-grconv": ("context", ["model.decoder=context", "model.encoder=grconv"]),
}
EQUAL_STEP = 1200  # a validation step (every 400) that 12 minutes reach with every setting
BY_LENGTH = ["context-rnn", "context-grconv", "gru_reset_after"]  # the attention decoder


def call(*argv: str) -> str:
    """Run a seq2seq command in this process; its stdout, or SystemExit on failure."""
    import contextlib
    import io

    from seq2seq.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    if status:
        raise SystemExit(f"failed: seq2seq {' '.join(argv)}")
    return out.getvalue()


def beam5_bleu(model: str | Path) -> float:
    """BLEU of `model` on its preset's test set, beam 5 (`seq2seq evaluate`)."""
    return json.loads(call("evaluate", "-m", str(model), "--beam", "5", "--json"))["bleu"]


def study_run(args: argparse.Namespace, name: str) -> Path:
    """Train one configuration of the study, or resume it; returns its run folder."""
    kind, overrides = STUDY[name]
    preset = args.preset if kind == "attention" else args.preset.replace("attention", kind)
    run = args.out / name
    budget = [f"train.max_minutes={args.budget}", "train.patience=0", "train.max_epochs=1000"]
    if args.max_steps:
        budget.append(f"train.max_steps={args.max_steps}")
    settings = [x for o in [*args.set, *budget, *overrides] for x in ("--set", o)]
    if (run / "config.yaml").is_file():
        call("train", "--resume", str(run), *settings)  # finished runs return at once
    else:
        call("train", preset, "--run-dir", str(run), *settings)
    return run


def study_row(run: Path) -> str:
    from seq2seq.checkpoint import load_file
    from seq2seq.plots import read_log

    payload = load_file(run / "model.pt")
    unique = {id(v): v.numel() for v in payload["state_dict"].values()}  # tied weights once
    records = read_log(run)
    train = [r for r in records if r.get("type") == "train"]
    valid = [r for r in records if r.get("type") == "valid" and "bleu" in r and not r.get("timed")]
    best = max(valid, key=lambda r: r["bleu"]) if valid else None
    # machine speed varies between hours, so also compare at one step that every run reaches
    at_step = next((r["bleu"] for r in valid if r["step"] == EQUAL_STEP), "-")
    test = beam5_bleu(run / "model.pt")
    model = payload["config"]["model"]
    shape = f"{model['layers']}x{'bi' if model['bidirectional'] else 'uni'}"
    speed = f"{train[-1]['tokens_per_s']:,}" if train else "-"
    dev = f"{best['bleu']} at {best['train_minutes']} min" if best else "-"
    return (
        f"| {run.name} | {model['cell']} | {model['encoder']} {shape} | {model['decoder']} | "
        f"{sum(unique.values()):,} | {speed} | {at_step} | {dev} | {test} |"
    )


def bench_study(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    args.figures.mkdir(parents=True, exist_ok=True)
    print(f"study: preset {args.preset}, {args.budget} training minutes a run, {args.set}")
    runs = {name: study_run(args, name) for name in STUDY}
    rows = [
        "| run | cell | encoder | decoder | parameters | target tokens/s "
        f"| dev BLEU at step {EQUAL_STEP:,} | best dev BLEU (greedy) | test BLEU beam 5 |",
        "|---|---|---|---|---|---|---|---|---|",
        *(study_row(run) for run in runs.values()),
    ]
    table = "\n".join(rows)
    (args.out / "results.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    # --force: the study's own figures, drawn again over the last ones
    figure = str(args.figures / "study-curves.png")
    call("plot", *(str(run) for run in runs.values()), "-o", figure, "--force")
    models = [x for name in BY_LENGTH for x in ("-m", str(runs[name] / "model.pt"))]
    plot = str(args.figures / "study-by-length.png")
    print(call("evaluate", *models, "--beam", "5", "--by-length", "--plot", plot, "--force"))


# ------------------------------------------------------------------ phrases


def bench_phrases(args: argparse.Namespace) -> None:
    if not Path(args.model).is_file():
        raise SystemExit(
            f"{args.model}: no such model; train it with scripts/score_phrase_table.sh "
            "(or pass --model)"
        )
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    lines = read_gzip_lines(args.table)
    pairs = len(lines)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.gz")
        seconds, rss = median_child(
            seq2seq("score-phrases", "-m", args.model, str(args.table), "-o", out, "--force"),
            args.runs,
            **quiet,
        )
        print(
            f"score-phrases {args.table.name}: {pairs:,} pairs, {seconds:.1f} s, "
            f"{pairs / seconds:,.0f} pairs/s, peak {rss:,.0f} MiB, {torch.get_num_threads()} "
            f"threads (median of {args.runs}, model load included)"
        )
        seconds, rss = median_child(
            seq2seq(
                "score-phrases", "-m", args.model, "--pmi", str(args.table), "-o", out, "--force"
            ),
            args.runs,
            **quiet,
        )
        print(f"  with --pmi: {seconds:.1f} s, {pairs / seconds:,.0f} pairs/s, peak {rss:,.0f} MiB")
        print(f"  signal: {phrase_signal(args.model, args.table)}")
        for total in args.lines:
            # each line repeated in a row: chunk deduplication leaves the table's own
            # pairs to score, so this measures the streaming, not the model
            big = Path(tmp) / f"table-{total}"
            repeat = -(-int(total) // len(lines))
            with big.open("wb") as f:
                for line in lines:
                    f.write((line * repeat).encode())
            seconds, rss = run_child(
                seq2seq("score-phrases", "-m", args.model, str(big), "-o", str(big) + ".out"),
                **quiet,
            )
            print(f"  {repeat * len(lines):,}-line table: {seconds:.0f} s, peak {rss:,.0f} MiB")
            big.unlink()
            Path(str(big) + ".out").unlink()


def phrase_signal(model: str, table: Path) -> str:
    """Does the score separate true pairs from false ones?

    true > other target: log p(e|f) above log p(e'|f), e' the target of a random
    other pair (sum, per token, and --pmi: minus the model's prior of e and e');
    true > other source: log p(e|f) above log p(e|f'), which cancels the target's
    prior by construction; Spearman: rank correlation with the table's p(e|f).
    """
    import random

    from seq2seq.phrases import model_text, parse_line, prior_log_probs, score_pairs
    from seq2seq.translate import Translator

    translator = Translator.from_file(model)
    src, tgt, direct = [], [], []
    with gzip.open(table, "rt", encoding="utf-8") as f:
        for line in f:
            fields = parse_line(line.rstrip("\n"))
            src.append(model_text(fields[0]))
            tgt.append(model_text(fields[1]))
            direct.append(float(fields[2].split()[2]))  # p(e|f)
    rng = random.Random(0)
    shuffle = [rng.randrange(len(tgt)) for _ in tgt]
    true, lengths = score_pairs(translator, src, tgt)
    other_tgt, other_lengths = score_pairs(translator, src, [tgt[j] for j in shuffle])
    other_src, _ = score_pairs(translator, [src[j] for j in shuffle], tgt)
    prior = prior_log_probs(translator, tgt)
    pmi = [t - p for t, p in zip(true, prior)]
    other_pmi = [o - prior[j] for o, j in zip(other_tgt, shuffle)]
    differ = [i for i, j in enumerate(shuffle) if tgt[i] != tgt[j] and src[i] != src[j]]

    def share(wins) -> str:
        return f"{100 * sum(wins) / len(differ):.1f}%"

    per_token = [t / n for t, n in zip(true, lengths)]
    target_wins = share(true[i] > other_tgt[i] for i in differ)
    token_wins = share(per_token[i] > other_tgt[i] / other_lengths[i] for i in differ)
    pmi_wins = share(pmi[i] > other_pmi[i] for i in differ)
    source_wins = share(true[i] > other_src[i] for i in differ)
    return (
        f"over {len(differ):,} pairs: true > other target {target_wins} (per token "
        f"{token_wins}, --pmi {pmi_wins}), true > other source {source_wins}; Spearman with "
        f"p(e|f) {spearman(true, direct):.3f} (per token {spearman(per_token, direct):.3f}, "
        f"--pmi {spearman(pmi, direct):.3f})"
    )


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        i = 0
        while i < len(order):  # average ranks for ties
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2
            i = j + 1
        return torch.tensor(result)

    ra, rb = ranks(a), ranks(b)
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scale", type=int, default=0, help="also prepare N pairs (tatoeba repeated)")
    p = sub.add_parser("cells")
    p.add_argument("--runs", type=int, default=5)
    p = sub.add_parser("train")
    p.add_argument("--preset", default="multi30k-de-en-attention")
    p.add_argument(
        "--set",
        nargs="*",
        default=["model.hidden_size=512"],
        help="config overrides; default: hidden 512, the size of Joey NMT's GRU example",
    )
    p.add_argument("--steps", type=int, default=50, help="at least 50 (one log record)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    p = sub.add_parser("translate")
    p.add_argument("--model", default=str(ROOT / "models" / "de-en.pt"))
    p.add_argument("--src", default=str(DATA / "multi30k" / "test_2016_flickr.de.gz"))
    p.add_argument("--ref", default=str(DATA / "multi30k" / "test_2016_flickr.en.gz"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda (no int8 there)")
    p = sub.add_parser("stream")
    p.add_argument("--model", default=str(ROOT / "models" / "de-en.pt"))
    p.add_argument("--src", type=Path, default=ROOT / "data" / "de-en" / "train.de")
    p.add_argument("--tgt", type=Path, default=ROOT / "data" / "de-en" / "train.en")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=float, default=10, help="seconds between RSS readings")
    p = sub.add_parser("ensemble")
    p.add_argument("--model", action="append", required=True, help="repeat: two or more")
    p.add_argument("--src", default=str(DATA / "multi30k" / "test_2016_flickr.de.gz"))
    p.add_argument("--ref", default=str(DATA / "multi30k" / "test_2016_flickr.en.gz"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p = sub.add_parser("typed")
    p.add_argument("--model", default=str(ROOT / "models" / "de-en.pt"))
    p.add_argument(
        "--sets",
        nargs="+",
        default=["tatoeba-de-en/valid", "multi30k/test_2016_flickr", "multi30k/val"],
        help="corpus/split under SEQ2SEQ_DATA, with .de.gz and .en.gz",
    )
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("serve")
    p.add_argument("--model", default=str(ROOT / "models" / "de-en.pt"))
    p.add_argument("--src", default=str(DATA / "multi30k" / "test_2016_flickr.de.gz"))
    p.add_argument("--clients", type=int, nargs="*", default=[1, 4, 16, 64])
    p.add_argument("--requests", type=int, default=200, help="requests per client count")
    p.add_argument("--long", type=int, default=10_000, help="requests of the RSS run (0: none)")
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="the server's")
    p.add_argument("--runs", type=int, default=3, help="alternating loads per client count")
    p.add_argument(
        "--ceiling",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="first, offline sentences/s of searches over N sentences (what merging can gain)",
    )
    p = sub.add_parser("time-to-bleu")
    p.add_argument("--preset", default="multi30k-de-en-attention")
    p.add_argument("--minutes", type=float, default=12, help="training minutes")
    p.add_argument("--set", nargs="*", default=[], help="config overrides")
    p.add_argument("--average", type=int, default=0, help="also the mean of the last N checkpoints")
    p = sub.add_parser("study")
    p.add_argument("--preset", default="multi30k-de-en-attention", help="its -context twin too")
    p.add_argument("--budget", type=float, default=12, help="training minutes a run")
    p.add_argument("--max-steps", type=int, default=0, help="also stop at this step (tests)")
    p.add_argument("--set", nargs="*", default=[], help="overrides for every run")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "study")
    p.add_argument("--figures", type=Path, default=ROOT / "docs")
    p = sub.add_parser("phrases")
    p.add_argument("--model", default=str(ROOT / "runs" / "tatoeba-fr-en-attention" / "model.pt"))
    p.add_argument(
        "--table",
        type=Path,
        default=DATA / "phrase-tables" / "notre-dame-fr-en" / "phrase-table.gz",
    )
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--lines", type=float, nargs="*", default=[1e6, 1e7])
    args = parser.parse_args()
    print(f"machine: {machine()}")
    {
        "prepare": bench_prepare,
        "cells": bench_cells,
        "train": bench_train,
        "translate": bench_translate,
        "stream": bench_stream,
        "ensemble": bench_ensemble,
        "typed": bench_typed,
        "phrases": bench_phrases,
        "serve": bench_serve,
        "study": bench_study,
        "time-to-bleu": bench_time_to_bleu,
    }[args.part](args)


if __name__ == "__main__":
    main()
