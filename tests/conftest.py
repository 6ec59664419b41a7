"""Shared fixtures: a tiny corpus made here, its prepared folder, the real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import SHARED_DATA, write_folder

from seq2seq.config import Config

# Tiny models: one thread is faster than two fighting over small matrices.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("corpus"), {"train": 300, "val": 20, "test": 20})


@pytest.fixture(scope="session")
def tiny_prepared(tiny_corpus, tmp_path_factory) -> Path:
    from seq2seq.prepare import prepare_corpus

    out = tmp_path_factory.mktemp("prepared") / "tiny"
    prepare_corpus(str(tiny_corpus), "de", "en", out, vocab_size=300)
    return out


@pytest.fixture
def tiny_config(tiny_prepared) -> Config:
    from seq2seq.config import load_config

    return load_config("tiny", [f"data.dir={tiny_prepared}"])


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("SEQ2SEQ_REQUIRE_DATA"):
            pytest.fail(f"real corpora not found at {SHARED_DATA}")
        pytest.skip(f"real corpora not found at {SHARED_DATA} (set SEQ2SEQ_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_file(tiny_prepared, tmp_path_factory) -> Path:
    """A model file from 10 training steps of the tiny preset."""
    from seq2seq.cli import main

    run = tmp_path_factory.mktemp("run")
    assert (
        main(
            [
                "train",
                "tiny",
                "--run-dir",
                str(run),
                "--set",
                f"data.dir={tiny_prepared}",
                "--set",
                "train.max_steps=10",
            ]
        )
        == 0
    )
    return run / "model.pt"


@pytest.fixture
def float64():
    """Exact comparisons: run the test with float64 as the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
