import gzip
import math
import random

import pytest

from seq2seq.cli import main
from seq2seq.data import DataError
from seq2seq.phrases import (
    PhraseLineError,
    ScoreOptions,
    format_line,
    format_score,
    parse_line,
    score_pairs,
    score_table,
    update_moses_ini,
)
from seq2seq.translate import Translator

CURRENT = (
    "das Haus ||| the house ||| 0.5 0.4 0.3 0.2 ||| 0-0 1-1 ||| 2 3 1 |||\n"
    "der Hund ||| the dog ||| 1 0.9 1 0.8 ||| 0-0 1-1 ||| 1 1 1 ||| {{Sparse 1}}\n"
    "Hund ||| dog ||| 1 1 1 1 ||| 0-0 ||| 5 5 5\n"
)
OLD = "das ||| the ||| 0.5 0.4 0.3 0.2 2.718 ||| (0) ||| (0) ||| 2 3\r\n"
SAMPLE = "der ||| the ||| 0.3 ||| ||| \ndas ||| the ||| 0.4 ||| |||  \n"


@pytest.fixture(scope="module")
def translator(tiny_model_file):
    return Translator.from_file(tiny_model_file)


def test_parse_and_format_are_lossless():
    for line in (CURRENT + OLD + SAMPLE).splitlines():
        fields = parse_line(line)
        assert " ||| ".join(fields) == line
    fields = parse_line("a ||| b ||| 0.5 ||| |||")
    assert format_line(fields, ["0.1"]) == "a ||| b ||| 0.5 0.1 ||| |||"
    with pytest.raises(PhraseLineError, match="fewer than 3"):
        parse_line("a ||| b")
    with pytest.raises(PhraseLineError, match="empty phrase"):
        parse_line(" ||| b ||| 1")


def test_format_score_floors_and_logs():
    assert format_score(-1000.0, 3, as_log=False, per_token=False) == "1e-30"
    assert format_score(math.log(0.25), 2, as_log=False, per_token=True) == "0.5"
    assert format_score(-2.0, 4, as_log=True, per_token=False) == "-2"
    assert format_score(5000.0, 1, as_log=False, per_token=False) == "1e+30"  # a --pmi ratio


@pytest.mark.parametrize("text", [CURRENT, OLD, SAMPLE], ids=["current", "old", "sample"])
def test_output_differs_only_by_the_appended_score(text, translator, tmp_path):
    table = tmp_path / "phrase-table"
    table.write_bytes(text.encode())
    score_table(table, tmp_path / "out", translator)
    out_lines = (tmp_path / "out").read_bytes().splitlines(keepends=True)
    in_lines = text.encode().splitlines(keepends=True)
    assert len(out_lines) == len(in_lines)
    for before, after in zip(in_lines, out_lines):
        fields_in, fields_out = before.split(b" ||| "), after.split(b" ||| ")
        assert fields_in[:2] == fields_out[:2] and fields_in[3:] == fields_out[3:]
        new = fields_out[2][len(fields_in[2]) :]
        assert fields_out[2].startswith(fields_in[2])
        assert 0 < float(new) <= 1


def model_log_prob(translator, src: str, tgt: str) -> float:
    import torch

    from seq2seq.data import collate

    batch = collate(translator.src.encode([src]), translator.tgt.encode([tgt]))
    with torch.no_grad():
        total, _ = translator.model.score(batch.src_ids, batch.src_lengths, batch.tgt_out)
    return float(total[0])


@pytest.mark.parametrize("pmi", [False, True])
def test_score_equals_exp_of_model_score(pmi, translator, tmp_path):
    table = tmp_path / "t.gz"
    table.write_bytes(gzip.compress(CURRENT.encode()))
    options = ScoreOptions(as_log=True, pmi=pmi)
    score_table(table, tmp_path / "out.gz", translator, options=options)
    lines = gzip.decompress((tmp_path / "out.gz").read_bytes()).decode().splitlines()
    for line in lines:
        src, tgt, scores = line.split(" ||| ")[:3]
        expected = model_log_prob(translator, src, tgt)
        if pmi:  # minus the prior: the same target after an empty source
            expected -= model_log_prob(translator, "", tgt)
        assert float(scores.split()[-1]) == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_order_kept_on_a_shuffled_table_with_small_chunks(translator, tmp_path):
    words = ["der", "die", "das", "hund", "katze", "mann", "frau", "park", "gras", "läuft"]
    rng = random.Random(0)
    lines = [f"{rng.choice(words)} {rng.choice(words)} ||| x{i} ||| 1 ||| ||| " for i in range(300)]
    table = tmp_path / "t"
    table.write_text("\n".join(lines) + "\n")
    score_table(table, tmp_path / "out", translator, options=ScoreOptions(chunk_lines=37))
    out = (tmp_path / "out").read_text().splitlines()
    assert [o.split(" ||| ")[1] for o in out] == [f"x{i}" for i in range(300)]
    log_probs, _ = score_pairs(translator, ["der hund"] * 2, ["the dog", "x"])
    assert log_probs[0] != log_probs[1]


@pytest.mark.parametrize(
    "bad, reason",
    [
        (b"a ||| b\n", "fewer than 3"),
        (b" ||| b ||| 1\n", "empty phrase"),
        (b"\xff ||| b ||| 1\n", "not valid UTF-8"),
        (b"der ||| the ||| abc xyz ||| |||\n", "scores field 'abc xyz' is not numbers"),
        (b"der ||| the ||| nan ||| |||\n", "scores 'nan' are not all finite and > 0"),
        (b"der ||| the ||| inf ||| |||\n", "scores 'inf' are not all"),
        (b"der ||| the ||| -inf ||| |||\n", "scores '-inf' are not all"),
        (b"der ||| the ||| -0.5 ||| |||\n", "scores '-0.5' are not all"),
        (b"der ||| the |||  ||| |||\n", "no scores"),
        (b"der ||| the ||| 0.5 0.5 ||| |||\n", "2 scores where the table has 1"),
        (
            b"der ||| das ||| the ||| 0.3 ||| |||\n",
            "scores field 'the' is not numbers",
        ),  # ' ||| ' in a phrase
    ],
)
def test_bad_lines_stop_or_are_skipped(bad, reason, translator, tmp_path):
    table = tmp_path / "t"
    table.write_bytes(b"der ||| the ||| 1 ||| |||\n" + bad + b"das ||| the ||| 1 ||| |||\n")
    with pytest.raises(DataError, match=f"t:2: {reason}"):
        score_table(table, tmp_path / "out", translator)
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    counts = score_table(table, tmp_path / "out", translator, options=ScoreOptions(skip_bad=True))
    assert counts == {"lines": 2, "skipped": 1}


def test_moses_ini_rewrite():
    ini = (
        "[feature]\nPhraseDictionaryMemory name=TranslationModel0 num-features=4 "
        "path=/old/phrase-table.gz input-factor=0\n\n[weight]\n"
        "TranslationModel0= 0.2 0.2 0.2 0.2\nLM0= 0.5\n"
    )
    new = update_moses_ini(ini, "/new/table.gz", added=2, weight=0.1).text
    assert "num-features=6 path=/new/table.gz input-factor=0" in new
    assert "TranslationModel0= 0.2 0.2 0.2 0.2 0.1 0.1\nLM0= 0.5\n" in new
    with pytest.raises(DataError, match="no PhraseDictionary"):
        update_moses_ini("[weight]\n", "x", 1)


@pytest.mark.slow
def test_cli_score_phrases_reverse_pmi_and_ini(tiny_model_file, shared_data, tmp_path):
    sample = shared_data / "phrase-tables" / "sample-de-en" / "phrase-table"
    ini = tmp_path / "moses.ini"  # the Notre-Dame ini, fitted to the sample's one score
    text = (shared_data / "phrase-tables" / "notre-dame-fr-en" / "moses.ini").read_text()
    ini.write_text(
        text.replace("num-features=4", "num-features=1").replace(
            "TranslationModel0= 0.2 0.2 0.2 0.2", "TranslationModel0= 0.2"
        )
    )
    out = tmp_path / "scored.gz"
    assert (
        main(
            [
                "score-phrases",
                "-m",
                str(tiny_model_file),
                "--reverse-model",
                str(tiny_model_file),
                "--pmi",
                str(sample),
                "-o",
                str(out),
                "--moses-ini",
                str(ini),
                str(tmp_path / "m.ini"),
            ]
        )
        == 0
    )
    scored = gzip.decompress(out.read_bytes()).decode().splitlines()
    original = sample.read_text().splitlines()
    assert len(scored) == len(original) == 22
    for before, after in zip(original, scored):
        assert len(after.split(" ||| ")[2].split()) == len(before.split(" ||| ")[2].split()) + 2
    assert "num-features=3" in (tmp_path / "m.ini").read_text()


def test_cli_phrase_space(tiny_model_file, tmp_path):
    pytest.importorskip("matplotlib")
    phrases = tmp_path / "p.txt"
    phrases.write_text("der hund\ndie katze\nein mann läuft\nim park\n")
    assert (
        main(
            [
                "phrase-space",
                "-m",
                str(tiny_model_file),
                str(phrases),
                "-o",
                str(tmp_path / "map.png"),
            ]
        )
        == 0
    )
    assert (tmp_path / "map.png").stat().st_size > 1000


INI = "[feature]\n{line}\n\n[weight]\nTranslationModel0= 0.2 0.2 0.2 0.2\nLM0= 0.5\n"


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "PhraseDictionaryMemory name=TranslationModel0 path=/old/pt.gz input-factor=0",
            "PhraseDictionaryMemory name=TranslationModel0 path=/new/pt.gz input-factor=0 "
            "num-features=5",
        ),
        (
            "PhraseDictionaryCompact name=TranslationModel0 num-features=4 path=/old/pt.minphr",
            "PhraseDictionaryCompact name=TranslationModel0 num-features=5 path=/new/pt.minphr",
        ),
    ],
    ids=["no-num-features", "compact"],
)
def test_moses_ini_without_num_features_and_compact(line, expected):
    ini = update_moses_ini(INI.format(line=line), "/new/pt.gz", added=1)
    assert expected + "\n" in ini.text
    assert "TranslationModel0= 0.2 0.2 0.2 0.2 0.2\n" in ini.text
    assert ini.scores == 4 and ini.feature == "TranslationModel0"


@pytest.mark.parametrize(
    "line, message",
    [
        ("PhraseDictionaryMemory num-features=4 path=/old/pt.gz", "no name="),
        ("PhraseDictionaryMemory name=TM1 num-features=4 path=/p", "no weight line 'TM1= ...'"),
        ("PhraseDictionaryMemory name=TranslationModel0 num-features=5 path=/p", "but 4 weights"),
        ("PhraseDictionaryOnDisk name=TranslationModel0 path=/p", "is not supported"),
    ],
)
def test_moses_ini_that_cannot_be_extended_is_refused(line, message):
    with pytest.raises(DataError, match=message):
        update_moses_ini(INI.format(line=line), "/new/pt.gz", added=1)


def _score_phrases(model, table, out, *extra):
    return main(["score-phrases", "-m", str(model), str(table), "-o", str(out), *extra])


def test_score_phrases_checks_every_input_before_writing(tiny_model_file, tmp_path, capsys):
    table = tmp_path / "pt"
    table.write_text("der ||| the ||| 0.3 0.2 0.1 0.5 ||| |||\n")
    out = tmp_path / "out" / "pt.gz"
    ini = tmp_path / "moses.ini"
    ini.write_text(INI.format(line="PhraseDictionaryMemory name=TranslationModel0 path=/p"))
    refused = [
        ("--moses-ini", str(tmp_path / "missing.ini"), str(tmp_path / "new.ini")),
        ("--moses-ini", str(ini), str(tmp_path / "new.ini"), "--log"),
        ("--moses-ini", str(ini), str(ini)),
    ]
    for extra in refused:
        assert _score_phrases(tiny_model_file, table, out, *extra) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("seq2seq score-phrases: error:") and "\n" not in err
    assert _score_phrases(tiny_model_file, table, table) == 1  # over its own input
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moses.ini", "pt"]
    # a table whose score count is not the ini's: nothing written either
    table.write_text("der ||| the ||| 0.3 ||| |||\n")
    assert _score_phrases(tiny_model_file, table, out, "--moses-ini", str(ini), "new.ini") == 1
    assert "1 scores where the table has 4" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moses.ini", "pt"]


def test_score_phrases_says_how_to_binarize_and_tune(tiny_model_file, tmp_path, caplog):
    caplog.set_level("INFO")
    table = tmp_path / "pt"
    table.write_text("der ||| the ||| 0.3 0.2 0.1 0.5 ||| |||\n")
    ini = tmp_path / "moses.ini"
    ini.write_text(INI.format(line="PhraseDictionaryCompact name=TranslationModel0 path=/p"))
    new = tmp_path / "new.ini"
    out = tmp_path / "scored.gz"
    assert _score_phrases(tiny_model_file, table, out, "--moses-ini", str(ini), str(new)) == 0
    assert f"path={tmp_path / 'scored.minphr'}" in new.read_text()
    assert f"processPhraseTableMin -in {out} -out {tmp_path / 'scored'} -nscores 5" in caplog.text
    assert "--activate-features=TranslationModel0" in caplog.text


def test_truncated_gzip_table_is_one_line(tiny_model_file, tmp_path, capsys):
    table = tmp_path / "pt.gz"
    lines = "".join(f"w{i} ||| x{i} ||| 0.5 ||| |||\n" for i in range(3000))
    data = gzip.compress(lines.encode())
    table.write_bytes(data[: len(data) // 2])
    assert _score_phrases(tiny_model_file, table, tmp_path / "out") == 1
    assert "truncated or corrupt gzip" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
