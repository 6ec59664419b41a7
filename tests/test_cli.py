import json
import subprocess
import sys

import pytest

from seq2seq.cli import main
from seq2seq.evaluate import score_corpus


def test_translate_arguments_and_nbest(tiny_model_file, capsys):
    assert main(["translate", "-m", str(tiny_model_file), "der hund", "ein mann läuft"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert (
        main(["translate", "-m", str(tiny_model_file), "--beam", "3", "--nbest", "3", "der hund"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("0 ||| ") for line in lines)
    assert main(["translate", "-m", str(tiny_model_file), "--beam", "2", "--nbest", "3", "x"]) == 1


def test_translate_stdin_keeps_count_and_order_on_bad_input(tiny_model_file):
    raw = b"der hund\n\n   \nein \xff mann\n" + b"hund " * 2000 + b"\nkatze\x07\x1b[31m\ndie frau"
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq", "translate", "-m", str(tiny_model_file), "--beam", "1"],
        input=raw,
        capture_output=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out[:-1]) == 7
    assert out[1] == "" and out[2] == ""
    stderr = result.stderr.decode()
    assert "invalid UTF-8 replaced" in stderr and "cut to" in stderr
    assert "Traceback" not in stderr


def test_translate_file_to_file_and_evaluate(tiny_model_file, tiny_prepared, tmp_path, capsys):
    out = tmp_path / "hyp.en"
    assert (
        main(
            [
                "translate",
                "-m",
                str(tiny_model_file),
                "--input",
                str(tiny_prepared / "test.de"),
                "--output",
                str(out),
                "--beam",
                "1",
            ]
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 20
    assert main(["evaluate", "--hyp", str(out), "--ref", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bleu"] == 100.0 and result["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert (
        main(
            [
                "evaluate",
                "-m",
                str(tiny_model_file),
                "--src",
                str(tiny_prepared / "test.de"),
                "--ref",
                str(tiny_prepared / "test.en"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert text.startswith("BLEU ") and "tok:13a" in text and "chrF" in text


def test_score_corpus_identical_is_100():
    result = score_corpus(["A dog runs .", "Hello"], ["A dog runs .", "Hello"])
    assert result["bleu"] == 100.0 and result["chrf"] == 100.0
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score_corpus(["a", "b"], ["a"])


def test_bad_model_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert main(["translate", "-m", str(bad), "hallo"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("seq2seq translate: error:") and "\n" not in err


def test_prepare_cli_and_errors(tiny_corpus, tmp_path, capsys):
    assert (
        main(
            [
                "prepare",
                str(tiny_corpus),
                "--src",
                "de",
                "--tgt",
                "en",
                "--out",
                str(tmp_path / "p"),
                "--vocab-size",
                "300",
            ]
        )
        == 0
    )
    assert (tmp_path / "p" / "stats.json").is_file()
    assert (
        main(
            [
                "prepare",
                str(tmp_path / "nope"),
                "--src",
                "de",
                "--tgt",
                "en",
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 1
    )
    assert "no such file or folder" in capsys.readouterr().err


def test_every_command_has_help(capsys):
    for command in (
        "prepare",
        "train",
        "translate",
        "evaluate",
        "plot",
        "score-phrases",
        "phrase-space",
        "export",
    ):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: seq2seq" in capsys.readouterr().out


def test_plot_curves(tiny_model_file, tmp_path):
    pytest.importorskip("matplotlib")
    run = tiny_model_file.parent
    assert main(["plot", str(run), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_plot_attention(tiny_model_file, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "a.png"
    assert (
        main(
            [
                "translate",
                "-m",
                str(tiny_model_file),
                "--plot-attention",
                str(png),
                "der hund läuft",
            ]
        )
        == 0
    )
    assert png.stat().st_size > 1000
