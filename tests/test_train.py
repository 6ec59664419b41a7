import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import free_port

from seq2seq.checkpoint import load_file
from seq2seq.config import ConfigError, load_config
from seq2seq.runs import RunFolderError
from seq2seq.train import Trainer, clip_gradients, make_scheduler


def last_checkpoint(run_dir):
    return load_file(sorted((run_dir / "checkpoints").glob("step*.pt"))[-1], "checkpoint")


def crash_after_step(monkeypatch, step: int) -> None:
    """Make training raise, as a power cut would, right after `step`."""
    original = Trainer._after_step

    def crash(self, loss):
        original(self, loss)
        if self.progress.step == step:
            raise RuntimeError("power cut")

    monkeypatch.setattr(Trainer, "_after_step", crash)


def crash_and_resume(config, run, monkeypatch, step: int) -> dict:
    """Train into `run` until a crash right after `step`, resume to the end; the last checkpoint."""
    crash_after_step(monkeypatch, step)
    with pytest.raises(RuntimeError, match="power cut"):
        Trainer.build(config, run).run()
    monkeypatch.undo()
    assert last_checkpoint(run)["progress"]["step"] <= step
    Trainer.build(config, run, resume=True).run()
    return last_checkpoint(run)


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_writes_run_folder_and_model(tiny_config, tmp_path):
    run = tmp_path / "run"
    model_path = Trainer.build(tiny_config, run).run()
    assert model_path.is_file() and (run / "config.yaml").is_file()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["type"] == "valid"]
    assert valid and {"loss", "ppl", "bleu", "chrf"} <= valid[0].keys()
    assert load_file(model_path)["metrics"]["dev_bleu"] == max(r["bleu"] for r in valid)
    assert len(list((run / "checkpoints").glob("*.pt"))) <= tiny_config.train.keep_checkpoints


def test_training_keeps_every_onednn_primitive_unless_told_otherwise(
    tiny_config, tmp_path, monkeypatch
):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "")  # so that the test's end restores it
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    Trainer.build(tiny_config, tmp_path / "default")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "8192"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "256")
    Trainer.build(tiny_config, tmp_path / "told")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "256"


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
    Trainer.build(config, tmp_path / "straight").run()

    resumed = crash_and_resume(config, tmp_path / "crashed", monkeypatch, 13)
    straight = last_checkpoint(tmp_path / "straight")
    assert resumed["progress"]["step"] == straight["progress"]["step"] == 24
    assert_same_parameters(straight["state_dict"], resumed["state_dict"])
    assert_same_parameters(straight["optimizer"]["state"][0], resumed["optimizer"]["state"][0])


def test_fp16_scales_the_loss_and_resumes_bit_identical(tiny_config, tmp_path, monkeypatch):
    config = tiny(tiny_config, "train.precision=fp16", "train.max_steps=12")
    Trainer.build(config, tmp_path / "straight").run()
    resumed = crash_and_resume(config, tmp_path / "crashed", monkeypatch, 11)
    straight = last_checkpoint(tmp_path / "straight")
    assert straight["scaler"]["scale"] > 1  # the loss scale travels with the checkpoint
    assert_same_parameters(straight["state_dict"], resumed["state_dict"])


def test_resume_a_finished_run_with_a_higher_limit(tiny_config, tmp_path):
    config = load_config("tiny", [f"data.dir={tiny_config.data.dir}", "train.max_steps=3"])
    Trainer.build(config, tmp_path / "run").run()
    Trainer.build(config, tmp_path / "run", resume=True).run()  # limits unchanged: nothing to do
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 3
    more = load_config("tiny", [f"data.dir={tiny_config.data.dir}", "train.max_steps=5"])
    Trainer.build(more, tmp_path / "run", resume=True).run()
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 5


def test_early_stopping_after_patience_validations_without_gain(tiny_config, tmp_path):
    # lr ~0: the dev BLEU never moves, so every validation after the first is "no gain"
    overrides = ["train.lr=1e-9", "train.valid_every=2", "train.patience=2", "train.max_steps=50"]
    config = load_config("tiny", [f"data.dir={tiny_config.data.dir}", *overrides])
    Trainer.build(config, tmp_path / "run").run()
    assert last_checkpoint(tmp_path / "run")["progress"]["step"] == 6


def test_without_a_dev_split_the_plateau_keeps_its_rate_and_the_latest_model_is_kept(
    tiny_config, tmp_path
):
    # no dev BLEU is no signal: the rate was halved at every other validation, as if the
    # model had stopped learning
    import shutil

    folder = tmp_path / "no-dev"
    shutil.copytree(tiny_config.data.dir, folder, ignore=shutil.ignore_patterns("val.*"))
    overrides = [
        "train.valid_every=5",
        "train.max_steps=120",
        "train.max_epochs=9",
        "train.patience=2",
    ]
    config = load_config("tiny", [f"data.dir={folder}", *overrides])
    Trainer.build(config, tmp_path / "run").run()
    log = (tmp_path / "run" / "log.jsonl").read_text()
    records = [json.loads(line) for line in log.splitlines()]
    rates = {r["lr"] for r in records if r["type"] == "train"}
    assert rates == {config.train.lr}
    assert load_file(tmp_path / "run" / "model.pt")["metrics"]["step"] == 120  # no early stop


def test_a_finished_run_folder_is_not_overwritten(tiny_config, tmp_path):

    config = load_config("tiny", [f"data.dir={tiny_config.data.dir}", "train.max_steps=2"])
    Trainer.build(config, tmp_path / "run").run()
    with pytest.raises(RunFolderError, match="holds a run already: --resume"):
        Trainer.build(config, tmp_path / "run")


def test_signal_saves_a_checkpoint_and_stops(tiny_config, tmp_path, monkeypatch):
    import signal

    original = Trainer._after_step

    def interrupt_at_4(self, loss):  # as if the signal came during step 4
        if self.progress.step == 4:
            self._on_signal(signal.SIGTERM, None)
        original(self, loss)

    monkeypatch.setattr(Trainer, "_after_step", interrupt_at_4)
    Trainer.build(tiny_config, tmp_path / "run").run()
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
    Trainer.build(config, tmp_path / "run").run()
    checkpoint = last_checkpoint(tmp_path / "run")
    assert checkpoint["progress"]["step"] == 8
    # warm-up to step 5, then lr * sqrt(5 / (s + 1)): after 8 steps sqrt(5 / 9)
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(math.sqrt(5 / 9))
    assert "square_avg" in checkpoint["optimizer"]["state"][0]  # Adadelta's own state


def test_linear_decay_warms_up_then_falls_to_zero_at_max_steps():
    settings = ["train.schedule=linear_decay", "train.warmup_steps=4", "train.max_steps=10"]
    config = load_config("tiny", settings)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = make_scheduler(optimizer, config.train)
    rates = []
    for _ in range(11):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.5, 1.0, 1.5, 2.0, 2.0, 5 / 3, 4 / 3, 1.0, 2 / 3, 1 / 3, 0.0]
    assert rates == pytest.approx(expected)
    with pytest.raises(ConfigError, match="needs train.max_steps or train.max_minutes"):
        load_config("tiny", ["train.schedule=linear_decay"])


def test_linear_decay_under_a_time_budget_warms_up_then_falls_to_zero_at_its_end():
    config = load_config(
        "tiny", ["train.schedule=linear_decay", "train.warmup_steps=4", "train.max_minutes=1"]
    )
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    end = 0  # not known until the end of warm-up
    scheduler = make_scheduler(optimizer, config.train, lambda: end)
    rates = []
    for step in range(11):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        end = 10 if step >= 3 else 0
    assert rates == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 5 / 3, 4 / 3, 1.0, 2 / 3, 1 / 3, 0.0])


def fake_step_seconds(monkeypatch, seconds: float) -> None:
    """Every training step takes `seconds` by the training loop's clock."""
    from types import SimpleNamespace

    import seq2seq.train

    ticks = iter(range(10**6))
    clock = SimpleNamespace(
        perf_counter=lambda: next(ticks) * seconds, monotonic=seq2seq.train.time.monotonic
    )
    monkeypatch.setattr(seq2seq.train, "time", clock)


def test_a_time_budget_ends_the_decay_where_the_warm_ups_speed_runs_out_and_resumes(
    tiny_config, tmp_path, monkeypatch
):
    # 0.5 s a step, 6 s in all: the end, fixed after 4 steps of warm-up, is step 4 + 95 % of 8
    config = tiny(
        tiny_config,
        "train.schedule=linear_decay",
        "train.warmup_steps=4",
        "train.max_minutes=0.1",
        "train.checkpoint_every=4",
        "train.max_epochs=100",
    )
    fake_step_seconds(monkeypatch, 0.5)
    Trainer.build(config, tmp_path / "straight").run()
    straight = last_checkpoint(tmp_path / "straight")
    assert straight["progress"]["step"] == straight["progress"]["decay_end"] == 11
    assert straight["optimizer"]["param_groups"][0]["lr"] == 0
    records = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").open()]
    assert {"type": "schedule", "step": 4, "decay_end": 11} in records

    # a crash after the end was fixed; the resumed run (on the real clock) keeps it
    fake_step_seconds(monkeypatch, 0.5)
    resumed = crash_and_resume(config, tmp_path / "crashed", monkeypatch, 9)
    assert resumed["progress"]["step"] == 11
    assert_same_parameters(straight["state_dict"], resumed["state_dict"])


@pytest.mark.parametrize("max_norm", [0.5, 5.0])
def test_clipping_equals_torchs_above_and_below_the_threshold(max_norm):
    torch.manual_seed(0)
    parameters = [torch.nn.Parameter(torch.randn(n)) for n in (3, 7)]
    for p in parameters:
        p.grad = torch.randn_like(p)
    twins = [torch.nn.Parameter(p.detach().clone()) for p in parameters]
    for p, twin in zip(parameters, twins):
        twin.grad = p.grad.clone()
    torch.nn.utils.clip_grad_norm_(twins, max_norm)
    unused = torch.nn.Parameter(torch.zeros(2))  # no gradient: skipped, as torch does
    clip_gradients([*parameters, unused], max_norm)
    for p, twin in zip(parameters, twins):
        assert torch.equal(p.grad, twin.grad)
    assert unused.grad is None


def run_child(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a child process with its output captured."""
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def assert_ok(done: subprocess.CompletedProcess) -> None:
    """On failure the test shows what the child printed."""
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stderr[-4000:]}"


def torchrun(arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Two processes under torchrun. Another process may take the free port
    between our check and torchrun's bind (it happened in CI): then a new port."""
    for _ in range(3):
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
        done = run_child(
            [*command, "--master_addr=127.0.0.1", f"--master_port={free_port()}", *arguments], env
        )
        if "EADDRINUSE" not in done.stderr:
            break
    return done


@pytest.mark.slow
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
    train = ["-m", "seq2seq", "train", "tiny", *common, "--run-dir"]
    assert_ok(torchrun([*train, str(tmp_path / "ddp")], env))
    single = [sys.executable, *train, str(tmp_path / "one"), "--set", "train.accumulate=2"]
    assert_ok(run_child(single, env))
    ddp, one = last_checkpoint(tmp_path / "ddp"), last_checkpoint(tmp_path / "one")
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["constant", "linear_decay"])
def test_two_processes_stop_together_under_a_time_limit(tiny_config, tmp_path, schedule):
    # each rank has its own clock; one that stopped alone would leave the other waiting
    # (as would one without a batch at an epoch's end: 43 batches an epoch here)
    settings = [
        f"data.dir={tiny_config.data.dir}",
        f"train.schedule={schedule}",
        "train.warmup_steps=5",
        "train.max_minutes=0.03",
        "train.max_epochs=1000",
        "data.valid=none",
    ]
    command = ["-m", "seq2seq", "train", "tiny", "--run-dir", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert_ok(torchrun([*command, *(x for o in settings for x in ("--set", o))], env))
    progress = last_checkpoint(tmp_path / "ddp")["progress"]
    assert progress["epoch"] > 1
    if schedule == "linear_decay":
        assert 5 < progress["step"] <= progress["decay_end"]


def tiny(tiny_config, *overrides):
    return load_config("tiny", [f"data.dir={tiny_config.data.dir}", *overrides])


def test_languages_come_from_the_prepared_folder(tiny_config, tmp_path):
    from seq2seq.data import DataError

    trainer = Trainer.build(tiny(tiny_config, "data.src=''", "data.tgt=''"), tmp_path / "a")
    assert (trainer.config.data.src, trainer.config.data.tgt) == ("de", "en")
    assert load_config(tmp_path / "a" / "config.yaml").data.src == "de"
    # the other direction uses each language's own tokenizer
    reverse = Trainer.build(tiny(tiny_config, "data.src=en", "data.tgt=de"), tmp_path / "b")
    folder = tiny_config.data.dir
    assert reverse.src_tok.model_bytes == (Path(folder) / "spm.en.model").read_bytes()
    assert reverse.tgt_tok.model_bytes == (Path(folder) / "spm.de.model").read_bytes()
    with pytest.raises(DataError, match="prepared for de->en, not fr->en"):
        Trainer.build(tiny(tiny_config, "data.src=fr"), tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_corpus_neutral_presets_and_their_multi30k_variants():
    for name in ("attention", "context", "grconv"):
        neutral = load_config(name)
        assert neutral.data.dir == "" and neutral.train.valid_minutes > 0
        variant = load_config(f"multi30k-de-en-{name}")
        assert variant.model == neutral.model and variant.search == neutral.search
        assert (variant.data.src, variant.data.tgt, variant.train.valid_every) == ("de", "en", 400)
    with pytest.raises(ConfigError, match="data.dir: not set"):
        Trainer.build(load_config("attention"), "unused")


def test_timed_dev_reports_do_not_change_the_run(tiny_config, tmp_path):
    common = ["train.max_steps=12", "train.valid_every=5", "model.dropout=0.3"]
    Trainer.build(tiny(tiny_config, *common), tmp_path / "steps").run()
    Trainer.build(tiny(tiny_config, *common, "train.valid_minutes=1e-9"), tmp_path / "timed").run()
    records = [json.loads(x) for x in (tmp_path / "timed" / "log.jsonl").read_text().splitlines()]
    timed = [r for r in records if r.get("timed")]
    assert timed and all("bleu" in r for r in timed)
    assert_same_parameters(
        last_checkpoint(tmp_path / "steps")["state_dict"],
        last_checkpoint(tmp_path / "timed")["state_dict"],
    )


def test_without_a_terminal_the_log_shows_progress_and_a_summary(
    tiny_config, tmp_path, monkeypatch, caplog
):
    caplog.set_level("INFO")
    monkeypatch.setattr("seq2seq.train.REPORT_EVERY", 4)
    losses = []
    original = Trainer._train_step

    def recording(self, group):
        loss, tokens = original(self, group)
        losses.append(loss)
        return loss, tokens

    monkeypatch.setattr(Trainer, "_train_step", recording)
    Trainer.build(tiny(tiny_config, "train.max_steps=8"), tmp_path / "run").run()
    assert "step 4 epoch 1: loss" in caplog.text and "target tokens/s" in caplog.text
    assert "finished: 8 steps" in caplog.text and "model.pt" in caplog.text
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [r["step"] for r in train] == [4, 8]
    assert train[1]["loss"] == pytest.approx(sum(losses[4:8]) / 4, abs=1e-4)  # the mean


def test_resume_cleans_up_after_a_kill(tiny_config, tmp_path, monkeypatch):
    config = tiny(
        tiny_config, "train.max_steps=24", "train.checkpoint_every=5", "train.valid_every=3"
    )
    crash_after_step(monkeypatch, 13)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        Trainer.build(config, run).run()
    monkeypatch.undo()
    (run / "checkpoints" / ".step00000015.pt.tmp999").write_bytes(b"half")
    (run / ".model.pt.tmp999").write_bytes(b"half")
    with (run / "log.jsonl").open("a") as f:
        f.write('{"type": "train", "st')  # cut short by the kill
    Trainer.build(config, run, resume=True).run()
    assert not list(run.glob(".*.tmp*")) and not list((run / "checkpoints").glob(".*"))
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    for kind in ("train", "valid"):
        steps = [r["step"] for r in records if r["type"] == kind]
        assert steps == sorted(set(steps)), kind  # no duplicates from the replay


def test_a_run_killed_before_its_first_checkpoint_can_go_on(tiny_config, tmp_path):
    from seq2seq.cli import main

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = tiny(tiny_config, "train.max_steps=3")
    from seq2seq.config import save_config
    from seq2seq.runs import CONFIG_HEADER

    save_config(config, run / "config.yaml", header=CONFIG_HEADER)
    (run / "log.jsonl").write_text('{"type": "train", "step": 50, "loss": 1}\n')
    (run / "checkpoints" / ".step00000010.pt.tmp1").write_bytes(b"half")
    assert main(["train", "--resume", str(run)]) == 0
    assert last_checkpoint(run)["progress"]["step"] == 3
    assert '"step": 50' not in (run / "log.jsonl").read_text()
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    save_config(config, other / "config.yaml", header=CONFIG_HEADER)
    argv = ["train", "tiny", "--run-dir", str(other), "--set", f"data.dir={config.data.dir}"]
    assert main([*argv, "--set", "train.max_steps=2"]) == 0


def test_a_folder_with_other_files_is_not_a_run_folder(tiny_config, tmp_path):

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("my own notes")
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not a run.s"):
        Trainer.build(tiny(tiny_config), tmp_path / "mine")
    assert (tmp_path / "mine" / "config.yaml").read_text() == "my own notes"


@pytest.mark.parametrize(
    "change, key",
    [("model.hidden_size=32", "model.hidden_size"), ("train.optimizer=adadelta", "optimizer")],
)
def test_resume_refuses_changes_the_checkpoint_cannot_follow(tiny_config, tmp_path, change, key):
    from seq2seq.cli import main

    run = tmp_path / "run"
    Trainer.build(tiny(tiny_config, "train.max_steps=2"), run).run()
    assert main(["train", "--resume", str(run), "--set", change, "--set", "train.max_steps=4"]) == 1
    assert last_checkpoint(run)["progress"]["step"] == 2


def test_bad_devices_and_bad_utf8_are_one_line(tiny_config, tmp_path, capsys):
    import shutil

    from seq2seq.cli import main

    base = ["train", "tiny", "--set", f"data.dir={tiny_config.data.dir}"]
    assert main([*base, "--run-dir", str(tmp_path / "a"), "--set", "train.device=tpu9"]) == 1
    assert "not a torch device" in capsys.readouterr().err
    folder = tmp_path / "prepared"
    shutil.copytree(tiny_config.data.dir, folder)
    with (folder / "val.en").open("ab") as f:
        f.write(b"bad \xff\n")
    with (folder / "val.de").open("ab") as f:
        f.write(b"gut\n")
    argv = ["train", "tiny", "--set", f"data.dir={folder}", "--run-dir", str(tmp_path / "b")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "val.en:21: not valid UTF-8" in err and "\n" not in err


def test_validation_on_every_dev_set_keeps_the_best_mean(tiny_corpus, tmp_path):
    from helpers import write_folder

    from seq2seq.prepare import prepare_corpus

    other = write_folder(tmp_path / "other", {"train": 100, "valid": 7})
    folder = tmp_path / "both"
    prepare_corpus([str(tiny_corpus), str(other)], "de", "en", folder, vocab_size=300)
    config = load_config("tiny", [f"data.dir={folder}", "train.max_steps=6", "train.valid_every=3"])
    Trainer.build(config, tmp_path / "run").run()
    records = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["type"] == "valid"]
    assert [r["step"] for r in valid] == [3, 6]
    for record in valid:
        sets = record["sets"]
        assert sorted(sets) == sorted([tiny_corpus.name, "other"])
        mean = sum(s["bleu"] for s in sets.values()) / 2
        assert record["bleu"] == pytest.approx(mean, abs=0.01)
    best = max(r["bleu"] for r in valid)
    assert load_file(tmp_path / "run" / "model.pt")["metrics"]["dev_bleu"] == best
