import random
from pathlib import Path

import pytest

from seq2seq.cli import main
from seq2seq.data import DataError
from seq2seq.nbest import add_feature, parse_nbest_line

SHIPPED = Path(__file__).parents[1] / "models" / "multi30k-de-en.pt"
GERMAN = ["Ein Hund läuft durch den Park.", "Zwei Kinder spielen im Schnee.", "Eine Frau singt."]


def test_add_feature_keeps_every_other_byte():
    sentence, fields = parse_nbest_line("3 ||| a house  ||| F0= -1 F1= 2.5  ||| -3.25")
    assert sentence == 3
    line = add_feature(fields, "Seq2Seq0", -4.5)
    assert line == "3 ||| a house  ||| F0= -1 F1= 2.5 Seq2Seq0= -4.5  ||| -3.25"
    for bad, reason in (("0 ||| a ||| F0= 1", "fewer than 4"), ("x ||| a ||| f ||| 1", "whole")):
        with pytest.raises(DataError, match=reason):
            parse_nbest_line(bad)


@pytest.fixture(scope="module")
def nbest_list(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nbest")
    (folder / "src.de").write_text("".join(s + "\n" for s in GERMAN))
    out = folder / "nbest.txt"
    argv = ["translate", "-m", str(SHIPPED), "--input", str(folder / "src.de"), "--threads", "1"]
    assert (
        main(
            [*argv, "--beam", "5", "--nbest", "4", "--nbest-format", "moses", "--output", str(out)]
        )
        == 0
    )
    return folder


def test_rescoring_appends_one_feature_and_nothing_else(nbest_list):
    rescored = nbest_list / "rescored.txt"
    argv = ["score", "-m", str(SHIPPED), "--src", str(nbest_list / "src.de")]
    assert main([*argv, "--nbest", str(nbest_list / "nbest.txt"), "-o", str(rescored)]) == 0
    before = (nbest_list / "nbest.txt").read_text().splitlines()
    after = rescored.read_text().splitlines()
    assert len(before) == len(after) >= 3
    for old, new in zip(before, after):
        fields = new.split(" ||| ")
        # translate's list holds its own score as Seq2Seq0=: the new feature is the next name
        features, _, value = fields[2].rpartition(" Seq2Seq1= ")
        assert float(value) < 0
        assert " ||| ".join([*fields[:2], features, *fields[3:]]) == old
        names = [token for token in fields[2].split() if token.endswith("=")]
        assert names == ["Seq2Seq0=", "Seq2Seq1="]


def test_a_feature_name_is_never_repeated(nbest_list, tmp_path, capsys):
    (tmp_path / "moses.txt").write_text(
        "0 ||| a dog ||| LM0= -3 TM0= -1 -2 ||| -4\n2 ||| a woman ||| LM0= -2 TM0= -1 -1 ||| -3\n"
    )
    argv = ["score", "-m", str(SHIPPED), "--src", str(nbest_list / "src.de")]
    out = tmp_path / "out.txt"
    assert main([*argv, "--nbest", str(tmp_path / "moses.txt"), "-o", str(out)]) == 0
    assert [line.split(" ||| ")[2].split()[-2] for line in out.read_text().splitlines()] == [
        "Seq2Seq0=",
        "Seq2Seq0=",
    ]
    again = tmp_path / "again.txt"
    assert main([*argv, "--nbest", str(out), "-o", str(again), "--feature", "Seq2Seq0"]) == 1
    assert "already has a feature Seq2Seq0=" in capsys.readouterr().err and not again.exists()
    assert main([*argv, "--nbest", str(out), "-o", str(again), "--feature", "NMT"]) == 0
    assert all(" Seq2Seq0= " in x and " NMT= " in x for x in again.read_text().splitlines())
    for bad in ("", "a b", "NMT=", "a|b"):
        assert main([*argv, "--nbest", str(out), "-o", str(tmp_path / "x"), "--feature", bad]) == 1
        assert "--feature" in capsys.readouterr().err


def test_rescoring_restores_the_models_own_order(nbest_list):
    lines = (nbest_list / "nbest.txt").read_text().splitlines()
    shuffled = []
    for sentence in range(len(GERMAN)):
        group = [line for line in lines if line.startswith(f"{sentence} |||")]
        random.Random(sentence).shuffle(group)
        shuffled += group
    (nbest_list / "shuffled.txt").write_text("".join(x + "\n" for x in shuffled))
    out = nbest_list / "reordered.txt"
    argv = ["score", "-m", str(SHIPPED), "--src", str(nbest_list / "src.de"), "--per-token"]
    assert main([*argv, "--nbest", str(nbest_list / "shuffled.txt"), "-o", str(out)]) == 0
    for sentence in range(len(GERMAN)):
        group = [x for x in out.read_text().splitlines() if x.startswith(f"{sentence} |||")]
        ranked = sorted(group, key=lambda x: -float(x.split(" ||| ")[2].split("Seq2Seq1= ")[1]))
        texts = [x.split(" ||| ")[1] for x in ranked]
        original = [x.split(" ||| ")[1] for x in lines if x.startswith(f"{sentence} |||")]
        assert texts == original  # beam search ranks by log p / length (alpha 1)


def test_sentence_pairs_and_their_errors(nbest_list, tmp_path, capsys):
    from seq2seq.translate import Translator

    (tmp_path / "tgt.en").write_text("A dog runs through the park.\nTwo children.\nA woman.\n")
    argv = ["score", "-m", str(SHIPPED), "--src", str(nbest_list / "src.de")]
    assert main([*argv, "--tgt", str(tmp_path / "tgt.en")]) == 0
    scores = [float(x) for x in capsys.readouterr().out.split()]
    translator = Translator.from_file(SHIPPED)
    expected = translator.score_ids(
        translator.encode_sources(GERMAN),
        translator.tgt.encode(["A dog runs through the park.", "Two children.", "A woman."]),
        6000,
    )
    assert scores == pytest.approx(expected, abs=1e-3)
    (tmp_path / "pairs.tsv").write_text("".join(f"{g}\tx\n" for g in GERMAN))
    assert main(["score", "-m", str(SHIPPED), "--tsv", str(tmp_path / "pairs.tsv")]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    (tmp_path / "short.en").write_text("A dog.\n")
    assert main([*argv, "--tgt", str(tmp_path / "short.en")]) == 1
    assert "lines but" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 ||| a ||| F= 1 ||| 1\nbad line\n1 ||| b ||| F= 1 ||| 1\n", "fewer than 4"),
        ("1 ||| a ||| F= 1 ||| 1\n0 ||| b ||| F= 1 ||| 1\n", "not sorted"),
        ("7 ||| a ||| F= 1 ||| 1\n", "no such line"),
    ],
)
def test_bad_nbest_lists_are_one_line(nbest_list, tmp_path, capsys, text, message):
    (tmp_path / "list.txt").write_text(text)
    argv = ["score", "-m", str(SHIPPED), "--src", str(nbest_list / "src.de")]
    out = tmp_path / "out.txt"
    assert main([*argv, "--nbest", str(tmp_path / "list.txt"), "-o", str(out)]) == 1
    assert message in capsys.readouterr().err and not out.exists()
    if message == "fewer than 4":  # a counted skip with --skip-bad
        assert (
            main([*argv, "--nbest", str(tmp_path / "list.txt"), "-o", str(out), "--skip-bad"]) == 0
        )
        assert len(out.read_text().splitlines()) == 2


def test_streams_give_freed_memory_back_after_every_chunk(monkeypatch):
    from seq2seq import nbest
    from seq2seq.translate import Translator

    translator = Translator.from_file(SHIPPED)
    releases = []
    monkeypatch.setattr(nbest, "release_free_memory", lambda: releases.append(1))
    settings = nbest.ScoreSettings(chunk_lines=2)
    pairs = [(g, "A dog.") for g in GERMAN * 2]  # 6 pairs: 3 full chunks
    scores = list(nbest.score_pair_stream(translator, iter(pairs), settings))
    assert len(scores) == 6 and len(releases) == 3
