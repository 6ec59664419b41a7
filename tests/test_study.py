"""The gated-unit study (scripts/benchmark.py study) end to end on the tiny preset."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "benchmark.py"


@pytest.mark.slow
def test_study_trains_every_configuration_and_writes_its_table(tiny_prepared, tmp_path):
    pytest.importorskip("matplotlib")
    argv = [sys.executable, str(SCRIPT), "study", "--preset", "tiny", "--budget", "1"]
    argv += ["--max-steps", "1", "--out", str(tmp_path / "runs"), "--figures", str(tmp_path)]
    argv += ["--set", f"data.dir={tiny_prepared}", "train.valid_every=1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "runs" / "results.md").read_text().splitlines()
    assert len(table) == 2 + 13
    for cell in ("gru", "gru_reset_after", "gru1", "gru2", "gru3", "lstm", "tanh"):
        assert any(f"| {cell} |" in row for row in table)
    assert any("grconv" in row and "context" in row for row in table)
    assert (tmp_path / "study-curves.png").is_file() and (
        tmp_path / "study-by-length.png"
    ).is_file()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=900)  # resumes: all done
    assert (
        again.returncode == 0
        and (tmp_path / "runs" / "results.md").read_text().splitlines() == table
    )


@pytest.mark.slow
def test_time_to_bleu_also_scores_the_mean_of_the_last_checkpoints(tiny_prepared):
    argv = [sys.executable, str(SCRIPT), "time-to-bleu", "--preset", "tiny", "--minutes", "1"]
    argv += ["--average", "2", "--set", f"data.dir={tiny_prepared}", "train.max_steps=3"]
    argv += ["train.checkpoint_every=1", "train.valid_every=1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "3 steps" in result.stdout
    assert "the mean of the last 2 checkpoints: test BLEU" in result.stdout


def test_stream_reads_the_memory_of_translate_and_score(tiny_model_file, tmp_path):
    (tmp_path / "src.de").write_text("der hund läuft\n" * 400)
    (tmp_path / "tgt.en").write_text("the dog runs\n" * 400)
    argv = [sys.executable, str(SCRIPT), "stream", "--model", str(tiny_model_file)]
    argv += ["--src", str(tmp_path / "src.de"), "--tgt", str(tmp_path / "tgt.en")]
    result = subprocess.run([*argv, "--every", "0.2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("translate --beam 1: 400 lines", "score: 400 lines"):
        assert name in result.stdout
