import json

import pytest
import torch

from seq2seq.config import ConfigError, config_to_dict, load_config
from seq2seq.runs import RunFolder, RunFolderError, check_resumable, rng_state, set_rng_state


def test_a_new_run_needs_a_folder_without_a_run_or_user_files(tmp_path):
    RunFolder(tmp_path / "new").check_new()
    (tmp_path / "empty").mkdir()
    RunFolder(tmp_path / "empty").check_new()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step00000010.pt").write_bytes(b"x")
    with pytest.raises(RunFolderError, match="holds a run already"):
        RunFolder(tmp_path / "run").check_new()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(RunFolderError, match="thesis.tex"):
        RunFolder(tmp_path / "mine").check_new()


def test_a_users_config_yaml_is_not_a_killed_runs(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.yaml").write_text("preset: attention\n")
    with pytest.raises(RunFolderError, match="config.yaml"):
        RunFolder(tmp_path / "mine").check_new()
    killed = RunFolder(tmp_path / "killed")  # killed before its first checkpoint
    killed.start(load_config("tiny"))
    killed.check_new()
    assert load_config(killed.path / "config.yaml") == load_config("tiny")


def test_checkpoints_keep_the_last_k(tmp_path):
    run = RunFolder(tmp_path)
    for step in (1, 2, 3):
        run.save_checkpoint({"step": step}, step, keep=2)
    assert [p.name for p in run.checkpoints()] == ["step00000002.pt", "step00000003.pt"]


def test_clean_after_kill_keeps_the_log_up_to_the_checkpoint(tmp_path):
    run = RunFolder(tmp_path)
    records = [{"type": "train", "step": s} for s in (50, 100, 150)]
    run.log_path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"type": "tr')
    (tmp_path / ".model.pt.tmp7").write_bytes(b"half")
    run.clean_after_kill(100)
    assert [json.loads(x)["step"] for x in run.log_path.read_text().splitlines()] == [50, 100]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_resume_may_change_limits_but_not_the_model(tmp_path):
    saved = config_to_dict(load_config("tiny", ["data.dir=x"]))
    check_resumable(load_config("tiny", ["data.dir=x", "train.max_steps=99"]), saved)
    for change in ("model.layers=2", "data.dir=y", "train.schedule=constant"):
        with pytest.raises(ConfigError, match=change.split("=")[0]):
            check_resumable(load_config("tiny", ["data.dir=x", change]), saved)


def test_rng_state_round_trip():
    state = rng_state()
    first = torch.rand(3)
    set_rng_state(state)
    assert torch.equal(torch.rand(3), first)
