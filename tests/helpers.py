"""Helpers for tests: toy corpora and tiny models, made here (no downloads)."""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from seq2seq.config import ModelConfig
from seq2seq.model import build_model

SHARED_DATA = Path(os.environ.get("SEQ2SEQ_DATA", Path(__file__).parents[2] / "shared" / "data"))


def free_port() -> int:
    """A loopback port free right now (for servers and torchrun in tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def pipe_path(data: bytes) -> Iterator[str]:
    """A path that reads `data` once from a pipe, as bash's <(...) gives: a second open
    gets what is left (nothing), not the start again."""
    read, write = os.pipe()

    def feed() -> None:
        with os.fdopen(write, "wb") as f:
            f.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        yield f"/dev/fd/{read}"
    finally:
        writer.join(timeout=10)
        os.close(read)


WORDS_DE = "ein der die das mann frau hund katze läuft spielt sitzt im park auf dem gras".split()  # noqa: SIM905, E501
WORDS_EN = "a the the the man woman dog cat runs plays sits in-the park on the grass".split()  # noqa: SIM905, E501


def make_pairs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Toy word-for-word pairs, so tiny models can learn them."""
    rng = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(count):
        length = int(torch.randint(2, 7, (1,), generator=rng))
        idx = torch.randint(0, len(WORDS_DE), (length,), generator=rng).tolist()
        pairs.append((" ".join(WORDS_DE[i] for i in idx), " ".join(WORDS_EN[i] for i in idx)))
    return pairs


def write_folder(folder: Path, splits: dict[str, int], gz: bool = False) -> Path:
    """Write {split}.{de,en}[.gz] files of toy pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (split, count) in enumerate(splits.items()):
        pairs = make_pairs(count, seed)
        for side, lang in enumerate(("de", "en")):
            text = "".join(p[side] + "\n" for p in pairs).encode()
            path = folder / f"{split}.{lang}{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(text) if gz else text)
    return folder


def tiny_model(**changes) -> torch.nn.Module:
    """emb 8, hidden 16, vocab 32, in float64 and eval mode."""
    settings = dict(emb_size=8, hidden_size=16, maxout_size=8, attention_size=8, dropout=0.0)
    settings.update(changes)
    torch.manual_seed(0)
    model = build_model(ModelConfig(**settings), 32, 32)
    return model.double().eval()
