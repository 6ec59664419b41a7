import json
import os
import subprocess
import sys

import pytest
import torch

from seq2seq.checkpoint import load_file
from seq2seq.config import ConfigError, load_config
from seq2seq.train import Trainer


def last_checkpoint(run_dir):
    return load_file(sorted((run_dir / "checkpoints").glob("step*.pt"))[-1], "checkpoint")


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_writes_run_folder_and_model(tiny_config, tmp_path):
    run = tmp_path / "run"
    model_path = Trainer(tiny_config, run).run()
    assert model_path.is_file() and (run / "config.yaml").is_file()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["type"] == "valid"]
    assert valid and {"loss", "ppl", "bleu", "chrf"} <= valid[0].keys()
    assert load_file(model_path)["metrics"]["dev_bleu"] == max(r["bleu"] for r in valid)
    assert len(list((run / "checkpoints").glob("*.pt"))) <= tiny_config.train.keep_checkpoints


@pytest.mark.parametrize("accumulate", [1, 2])
def test_resume_after_a_crash_mid_epoch_is_bit_identical(
    tiny_config, tmp_path, monkeypatch, accumulate
):
    overrides = [
        f"data.dir={tiny_config.data.dir}",
        "train.max_steps=24",
        "train.checkpoint_every=5",
        f"train.accumulate={accumulate}",
        "train.valid_every=7",
        "model.dropout=0.3",
    ]
    config = load_config("tiny", overrides)
    Trainer(config, tmp_path / "straight").run()

    original = Trainer._after_step

    def crash_at_13(self, loss):
        original(self, loss)
        if self.progress.step == 13:
            raise RuntimeError("power cut")

    monkeypatch.setattr(Trainer, "_after_step", crash_at_13)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(config, tmp_path / "crashed").run()
    monkeypatch.undo()
    assert last_checkpoint(tmp_path / "crashed")["progress"]["step"] == 10
    Trainer(config, tmp_path / "crashed", resume=True).run()
    straight = last_checkpoint(tmp_path / "straight")
    resumed = last_checkpoint(tmp_path / "crashed")
    assert resumed["progress"]["step"] == straight["progress"]["step"] == 24
    assert_same_parameters(straight["state_dict"], resumed["state_dict"])
    assert_same_parameters(straight["optimizer"]["state"][0], resumed["optimizer"]["state"][0])


def test_resume_a_finished_run_with_a_higher_limit(tiny_config, tmp_path):
    config = load_config("tiny", [f"data.dir={tiny_config.data.dir}", "train.max_steps=3"])
    Trainer(config, tmp_path / "run").run()
    Trainer(config, tmp_path / "run", resume=True).run()  # limits unchanged: nothing to do
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 3
    more = load_config("tiny", [f"data.dir={tiny_config.data.dir}", "train.max_steps=5"])
    Trainer(more, tmp_path / "run", resume=True).run()
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 5


def test_early_stopping_after_patience_validations_without_gain(tiny_config, tmp_path):
    # lr ~0: the dev BLEU never moves, so every validation after the first is "no gain"
    overrides = ["train.lr=1e-9", "train.valid_every=2", "train.patience=2", "train.max_steps=50"]
    config = load_config("tiny", [f"data.dir={tiny_config.data.dir}", *overrides])
    Trainer(config, tmp_path / "run").run()
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 6


def test_a_finished_run_folder_is_not_overwritten(tiny_config, tmp_path):
    from seq2seq.data import DataError

    config = load_config("tiny", [f"data.dir={tiny_config.data.dir}", "train.max_steps=2"])
    Trainer(config, tmp_path / "run").run()
    with pytest.raises(DataError, match="holds a run already: --resume"):
        Trainer(config, tmp_path / "run")


def test_signal_saves_a_checkpoint_and_stops(tiny_config, tmp_path, monkeypatch):
    import signal

    original = Trainer._after_step

    def interrupt_at_4(self, loss):
        original(self, loss)
        if self.progress.step == 4:
            self._on_signal(signal.SIGTERM, None)

    monkeypatch.setattr(Trainer, "_after_step", interrupt_at_4)
    Trainer(tiny_config, tmp_path / "run").run()
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 4


def test_unknown_key_fails_before_any_work(tmp_path):
    from seq2seq.cli import main

    assert (
        main(
            ["train", "tiny", "--set", "train.learning_rate=1", "--run-dir", str(tmp_path / "run")]
        )
        == 1
    )
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError):
        load_config("tiny", ["model.cell=gru9"])


def test_adadelta_and_warmup_schedule_train(tiny_config, tmp_path):
    config = load_config(
        "tiny",
        [
            f"data.dir={tiny_config.data.dir}",
            "train.optimizer=adadelta",
            "train.lr=1.0",
            "train.schedule=warmup_decay",
            "train.warmup_steps=5",
            "train.max_steps=8",
            "model.decoder=context",
            "model.cell=gru",
        ],
    )
    Trainer(config, tmp_path / "run").run()
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 8


def test_two_process_torchrun_step_equals_single_process(tiny_config, tmp_path):
    common = [
        "--set",
        f"data.dir={tiny_config.data.dir}",
        "--set",
        "train.max_steps=1",
        "--set",
        "model.dropout=0.0",
        "--set",
        "data.valid=none",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "seq2seq",
            "train",
            "tiny",
            "--run-dir",
            str(tmp_path / "ddp"),
            *common,
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "seq2seq",
            "train",
            "tiny",
            "--run-dir",
            str(tmp_path / "one"),
            *common,
            "--set",
            "train.accumulate=2",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    ddp, one = last_checkpoint(tmp_path / "ddp"), last_checkpoint(tmp_path / "one")
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-5, atol=1e-6)
