import importlib.util
import json
import os
import subprocess
import sys

import pytest
from helpers import pipe_path

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
    assert 1 <= len(lines) <= 3 and all(line.startswith("0 ||| ") for line in lines)
    assert len({line.split(" ||| ")[1] for line in lines}) == len(lines)  # distinct texts
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
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):  # a DataError
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


def test_a_bare_command_lists_the_commands_and_version_says_which(capsys):
    assert main([]) == 1
    assert "score-phrases" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("seq2seq 0.")


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


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"seq2seq {command}: error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["translate", "--beam", "0", "x"],
        ["translate", "--beam", "-1", "x"],
        ["translate", "--nbest", "0", "x"],
        ["translate", "--nbest", "-1", "x"],
        ["translate", "--batch-tokens", "0", "x"],
        ["translate", "--batch-tokens", "-5", "x"],
        ["translate", "--device", "tpu9", "x"],
        ["translate", "--threads", "0", "x"],
        ["evaluate", "--beam", "-1", "--ref", "r", "--hyp", "h"],
        ["prepare", "c", "--src", "de", "--tgt", "en", "--out", "o", "--max-ratio", "nan"],
        ["prepare", "c", "--src", "de", "--tgt", "en", "--out", "o", "--vocab-size", "-3"],
        ["score-phrases", "t", "--weight", "nan"],
    ],
)
def test_meaningless_numbers_are_refused_at_parse_time(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 1
    _one_line_error(capsys, argv[0])


def test_nbest_is_checked_against_the_beam_that_will_be_used(tiny_model_file, capsys):
    # the tiny preset's beam is 2
    assert main(["translate", "-m", str(tiny_model_file), "--nbest", "2", "der hund"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["translate", "-m", str(tiny_model_file), "--nbest", "3", "der hund"]) == 1
    assert "(the beam is 2)" in _one_line_error(capsys, "translate")


def test_evaluate_bad_line_counts_are_one_line(tmp_path, capsys):
    (tmp_path / "h").write_text("a\nb\n")
    (tmp_path / "r").write_text("a\n")
    (tmp_path / "e").write_text("")
    for hyp, ref in (("h", "r"), ("e", "e"), ("e", "r")):
        argv = ["evaluate", "--hyp", str(tmp_path / hyp), "--ref", str(tmp_path / ref)]
        assert main(argv) == 1
        _one_line_error(capsys, "evaluate")


def test_translate_output_goes_into_a_new_folder_atomically(tiny_model_file, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "hyp.en"
    run_dir = str(tiny_model_file.parent)  # a run folder stands for its model.pt
    assert main(["translate", "-m", run_dir, "--output", str(out), "der hund", "ein mann"]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert sorted(p.name for p in out.parent.iterdir()) == ["hyp.en"]
    src = tmp_path / "in.de"
    src.write_text("der hund\n")
    assert main(["translate", "-m", run_dir, "--input", str(src), "--output", str(src)]) == 1
    assert "is the --input file" in _one_line_error(capsys, "translate")
    assert src.read_text() == "der hund\n"


def test_no_command_replaces_an_existing_file_unless_forced(tiny_model_file, tmp_path, capsys):
    model = str(tiny_model_file)
    (tmp_path / "in.de").write_text("der hund\nein mann\n")
    (tmp_path / "in.en").write_text("the dog\na man\n")
    (tmp_path / "phrases.txt").write_text("der hund\nein mann\ndie frau\n")
    source, target = str(tmp_path / "in.de"), str(tmp_path / "in.en")
    commands = {  # each writes OUT
        "translate": ["-m", model, "--input", source, "--output", "OUT"],
        "score": ["-m", model, "--src", source, "--tgt", target, "-o", "OUT"],
        "export": [model, "OUT"],
        "average": [model, model, "-o", "OUT"],
    }
    if importlib.util.find_spec("matplotlib"):
        commands["phrase-space"] = ["-m", model, str(tmp_path / "phrases.txt"), "-o", "OUT"]
        commands["plot"] = [str(tiny_model_file.parent), "-o", "OUT"]
    for name, argv in commands.items():
        out = tmp_path / f"{name}.png"
        out.write_text("the user's file\n")
        argv = [str(out) if a == "OUT" else a for a in argv]
        assert main([name, *argv]) == 1
        assert "exists; --force replaces it" in _one_line_error(capsys, name)
        assert out.read_text() == "the user's file\n"
        assert main([name, *argv, "--force"]) == 0, name
        capsys.readouterr()
        assert out.read_bytes() != b"the user's file\n"
    assert main(["translate", "-m", model, "--output", str(tmp_path), "der hund"]) == 1
    assert "is a folder" in _one_line_error(capsys, "translate")
    if "plot" in commands:  # a picture's format is its suffix: checked before any work
        argv = ["translate", "-m", model, "--plot-attention", str(tmp_path / "a.keep"), "der hund"]
        assert main(argv) == 1
        assert "a picture's name ends in .png" in _one_line_error(capsys, "translate")
        assert not (tmp_path / "a.keep").exists()


@pytest.mark.parametrize("how", ["terminal", "--line-buffered"])
def test_each_line_is_translated_as_soon_as_it_is_read(tiny_model_file, how):
    """A person at a terminal, or a program that writes a line and waits for its translation,
    gets each translation at once (a file is still searched 2,000 lines at a time)."""
    import pty
    import select

    command = [sys.executable, "-m", "seq2seq", "translate", "-m", str(tiny_model_file)]
    if how == "terminal":
        writer, reader = pty.openpty()  # stdin a terminal
        stdin, write = reader, lambda data: os.write(writer, data)
    else:
        command.append("--line-buffered")
        reader, writer = os.pipe()
        stdin, write = reader, lambda data: os.write(writer, data)
    process = subprocess.Popen(
        command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(2):  # each line answered while the input stays open
            write(b"der hund\n")
            ready, _, _ = select.select([process.stdout], [], [], 120)
            assert ready, "no translation before the input ended"
            assert process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()
        os.close(writer)
        os.close(reader)


def test_translate_reads_a_gzip_input_as_its_text(tiny_model_file, tmp_path):
    import gzip

    text = "der hund\nein mann läuft\n" * 3
    (tmp_path / "in.de").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "in.de.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    for name in ("in.de", "in.de.gz"):
        argv = ["translate", "-m", str(tiny_model_file), "--input", str(tmp_path / name)]
        assert main([*argv, "--output", str(tmp_path / f"{name}.en")]) == 0
    plain, unzipped = ((tmp_path / f"{n}.en").read_text() for n in ("in.de", "in.de.gz"))
    assert unzipped == plain and len(plain.splitlines()) == 6


def test_translate_drops_a_byte_order_mark(tiny_model_file, tmp_path, capsys, monkeypatch):
    import io

    (tmp_path / "in.de").write_text("der hund\n", encoding="utf-8")
    (tmp_path / "bom.de").write_text("\ufeffder hund\n", encoding="utf-8")
    outputs = []
    for name in ("in.de", "bom.de"):
        assert main(["translate", "-m", str(tiny_model_file), "--input", str(tmp_path / name)]) == 0
        outputs.append(capsys.readouterr().out)
    stdin = io.TextIOWrapper(io.BytesIO("\ufeffder hund\n".encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["translate", "-m", str(tiny_model_file)]) == 0
    outputs.append(capsys.readouterr().out)
    assert outputs[1] == outputs[2] == outputs[0]  # no leading space for the mark


def test_a_refused_translate_writes_nothing(tiny_model_file, tmp_path, capsys):
    out = tmp_path / "out" / "hyp.en"
    argv = ["translate", "-m", str(tiny_model_file), "--input", str(tmp_path / "missing")]
    assert main([*argv, "--output", str(out)]) == 1
    _one_line_error(capsys, "translate")
    assert not (tmp_path / "out").exists()


def test_plot_attention_with_beam_prints_the_translation(tiny_model_file, tmp_path, capsys, caplog):
    pytest.importorskip("matplotlib")
    caplog.set_level("INFO")
    png = tmp_path / "a.png"
    model = ["-m", str(tiny_model_file)]
    assert main(["translate", *model, "--beam", "2", "--plot-attention", str(png), "der hund"]) == 0
    captured = capsys.readouterr()
    beam_text = captured.out.strip()
    assert str(png) in caplog.text and png.stat().st_size > 1000
    assert main(["translate", *model, "--beam", "2", "der hund"]) == 0
    assert capsys.readouterr().out.strip() == beam_text
    assert main(["translate", *model, "--plot-attention", str(png)]) == 1
    assert "needs the sentence" in _one_line_error(capsys, "translate")


def test_every_command_shows_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 8000)", "(default: 100)", "(default: 9.0)"):
        assert default in text


def test_threads_reach_torch_and_sentencepiece(tiny_model_file, capsys):
    import torch

    from seq2seq import tokenizer

    before = torch.get_num_threads()
    try:
        assert main(["translate", "--threads", "1", "-m", str(tiny_model_file), "der hund"]) == 0
        assert torch.get_num_threads() == 1 and tokenizer._threads == 1
    finally:
        torch.set_num_threads(before)
        tokenizer.set_threads(os.cpu_count() or 1)


def test_export_metrics_must_be_a_json_object(tiny_model_file, tmp_path, capsys):
    for metrics in ("[1, 2]", "{bad json"):
        argv = ["export", str(tiny_model_file), str(tmp_path / "m.pt"), "--metrics", metrics]
        assert main(argv) == 1
        _one_line_error(capsys, "export")
    assert not (tmp_path / "m.pt").exists()


def test_api_accepts_a_lone_surrogate(tiny_model_file):
    from seq2seq.translate import Translator

    translator = Translator.from_file(tiny_model_file)
    assert len(translator.translate(["der \udc80 hund"])) == 1


def test_plot_skips_a_record_cut_short_and_draws_timed_reports(tiny_model_file, tmp_path):
    pytest.importorskip("matplotlib")
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_file.parent, run)
    with (run / "log.jsonl").open("a") as f:
        f.write('{"type": "valid", "step": 12, "timed": true, "bleu": 1.0, "loss": 2.0}\n{"ty')
    assert main(["plot", str(run), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert main(["plot", str(tmp_path)]) == 1


def test_phrase_space_labels_are_plain_text(tiny_model_file, tmp_path):
    pytest.importorskip("matplotlib")
    phrases = tmp_path / "p.txt"
    phrases.write_text("der $hund$\ndie katze $\n$\\frac{ein}{mann\nim park\n")
    argv = ["phrase-space", "-m", str(tiny_model_file), str(phrases), "-o", str(tmp_path / "m.png")]
    assert main(argv) == 0


def test_evaluate_defaults_to_the_models_test_split(tiny_model_file, capsys):
    # the tiny preset's data.test is the prepared folder's "test" split
    assert main(["evaluate", "-m", str(tiny_model_file), "--json"]) == 0
    assert "bleu" in json.loads(capsys.readouterr().out)
    assert main(["evaluate", "-m", str(tiny_model_file), "--src", "x"]) == 1
    assert main(["evaluate", "--hyp", "x"]) == 1


def test_evaluate_scores_each_test_split_of_a_folder_of_several_corpora(
    tiny_model_file, tiny_prepared, tmp_path, capsys
):
    import shutil

    import torch

    folder = tmp_path / "two"  # as prepare writes several corpora: test.NAME each
    shutil.copytree(tiny_prepared, folder)
    for name in ("a", "b"):
        for lang in ("de", "en"):
            shutil.copy(folder / f"test.{lang}", folder / f"test.{name}.{lang}")
    for lang in ("de", "en"):
        (folder / f"test.{lang}").unlink()
    payload = torch.load(tiny_model_file, weights_only=True)
    payload["config"]["data"]["dir"] = str(folder)
    model = tmp_path / "m.pt"
    torch.save(payload, model)
    assert main(["evaluate", "-m", str(model), "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["test_set"] for r in results] == ["test.a", "test.b"]
    assert results[0]["bleu"] == results[1]["bleu"]
    assert main(["evaluate", "-m", str(model)]) == 0
    assert "== test.a" in capsys.readouterr().out
    assert main(["evaluate", "-m", str(model), "--by-length", "3"]) == 0
    out = capsys.readouterr().out
    assert "== test.a" in out and "== test.b" in out and out.count("| source words |") == 2
    if importlib.util.find_spec("matplotlib"):
        png = str(tmp_path / "p.png")
        assert main(["evaluate", "-m", str(model), "--by-length", "3", "--plot", png]) == 1
        assert "several" in _one_line_error(capsys, "evaluate")


def test_evaluate_without_a_test_split_asks_for_src_and_ref(
    tiny_model_file, tiny_prepared, tmp_path, capsys
):
    import shutil

    import torch

    folder = tmp_path / "no-test"  # as prepare writes a TSV corpus: train and val only
    shutil.copytree(tiny_prepared, folder, ignore=shutil.ignore_patterns("test.*"))
    payload = torch.load(tiny_model_file, weights_only=True)
    payload["config"]["data"]["dir"] = str(folder)
    torch.save(payload, tmp_path / "m.pt")
    assert main(["evaluate", "-m", str(tmp_path / "m.pt")]) == 1
    assert "no test split" in _one_line_error(capsys, "evaluate")
    shutil.rmtree(folder)  # a model file from another machine
    assert main(["evaluate", "-m", str(tmp_path / "m.pt")]) == 1
    assert "is not here" in _one_line_error(capsys, "evaluate")


def test_nbest_default_comes_from_the_model(tiny_model_file, tmp_path, capsys):
    import torch

    payload = torch.load(tiny_model_file, weights_only=True)
    payload["config"]["search"]["nbest"] = 2
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    assert main(["translate", "-m", str(path), "der hund"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_translate_and_evaluate_with_an_ensemble(tiny_model_file, capsys):
    model = str(tiny_model_file)
    assert main(["translate", "-m", model, "--beam", "1", "der hund"]) == 0
    alone = capsys.readouterr().out
    assert main(["translate", "-m", model, "-m", model, "--beam", "1", "der hund"]) == 0
    assert capsys.readouterr().out == alone
    assert main(["evaluate", "-m", model, "-m", model, "--json"]) == 0
    assert "bleu" in json.loads(capsys.readouterr().out)


def test_evaluate_by_length_with_two_models_and_a_plot(tiny_model_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    model = str(tiny_model_file)
    png = tmp_path / "by-length.png"
    argv = ["evaluate", "-m", model, "-m", model, "--by-length", "2,4", "--plot", str(png)]
    assert main(argv) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].count("BLEU") == 2 and len(table) == 2 + 3  # header, rule, 3 buckets
    assert png.stat().st_size > 1000
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "-m", model, "--by-length", "5,3"])
    assert exit_.value.code == 1


def test_evaluate_reads_pipes_once(tiny_model_file, tiny_prepared, capsys):
    # --src <(...) --ref <(...): a pipe read twice (once per model, again for --by-length)
    # came back empty the second time
    model = str(tiny_model_file)
    argv = ["evaluate", "-m", model, "-m", model, "--by-length", "2,4", "--json"]
    src, ref = (tiny_prepared / f"test.{lang}" for lang in ("de", "en"))
    assert main([*argv, "--src", str(src), "--ref", str(ref)]) == 0
    from_files = capsys.readouterr().out
    with pipe_path(src.read_bytes()) as src_pipe, pipe_path(ref.read_bytes()) as ref_pipe:
        assert main([*argv, "--src", src_pipe, "--ref", ref_pipe]) == 0
    assert capsys.readouterr().out == from_files


def test_plot_overlays_several_runs(tiny_model_file, tmp_path):
    pytest.importorskip("matplotlib")
    run = str(tiny_model_file.parent)
    assert main(["plot", run, run, "-o", str(tmp_path / "runs.png")]) == 0
    assert (tmp_path / "runs.png").stat().st_size > 1000
    assert main(["plot", run, run]) == 1


def test_the_default_model_translates_what_people_type(capsys):
    people_type = [
        "Können wir gehen?",
        "Ich habe Hunger. Wo ist der Bahnhof?",
        "Danke! 😀",
        "Das ist gut",
        "wo ist der bahnhof?",
        "ICH HABE HUNGER",
        "Ich moechte ein Bier",
    ]
    assert main(["translate", *people_type]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Can we go?",
        "I'm hungry. Where is the train station?",
        "Thank you. 😀",  # it was "Thank you. This is a good time for a while."
        "That's good",  # it was "That's good at this."
        "Where is the train station?",  # it was "What's the bar?"
        "I'M HUNGRY",  # it was "ICAATANAS"
        "I want a beer",  # it was "I am drinking a beer."
    ]
