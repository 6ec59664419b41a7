import gzip
import json

import pytest
from helpers import write_folder

from seq2seq.data import DataError, make_batches, padding_efficiency, read_lines
from seq2seq.prepare import load_tokenizers, prepare_corpus


def test_prepare_writes_splits_tokenizers_and_stats(tiny_prepared):
    stats = json.loads((tiny_prepared / "stats.json").read_text())
    assert stats["splits"]["train"]["kept"] == 300
    assert stats["splits"]["val"]["kept"] == 20 and stats["splits"]["test"]["kept"] == 20
    assert stats["splits"]["train"]["tokens_en"] > 300
    src, tgt, _ = load_tokenizers(tiny_prepared)
    assert src.vocab_size == tgt.vocab_size == 300
    line = next(read_lines(tiny_prepared / "train.de"))
    assert src.decode(src.encode([line])) == [line]


def test_rerun_gives_identical_outputs(tiny_corpus, tmp_path):
    first = prepare_corpus(str(tiny_corpus), "de", "en", tmp_path / "a", vocab_size=300)
    second = prepare_corpus(str(tiny_corpus), "de", "en", tmp_path / "b", vocab_size=300)
    assert first == second
    for name in ("train.de", "val.en", "spm.de.model", "spm.en.model", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_joint_tokenizer_and_drop_counts(tmp_path):
    folder = write_folder(tmp_path / "c", {"train": 200})
    with (folder / "train.de").open("a") as f:
        f.write("\n" + "lang " * 120 + "\n")
    with (folder / "train.en").open("a") as f:
        f.write("nothing on the other side\nlong\n")
    stats = prepare_corpus(str(folder), "de", "en", tmp_path / "out", vocab_size=300, joint=True)
    train = stats["splits"]["train"]
    assert train == {
        "read": 202,
        "kept": 200,
        "dropped_empty": 1,
        "dropped_too_long": 1,
        **{k: v for k, v in train.items() if k.startswith("tokens")},
    }
    assert stats["tokenizer"]["files"] == {"de": "spm.model", "en": "spm.model"}


def test_xml_escapes_in_a_corpus_are_undone(tmp_path):
    # else a model learns to write "&amp;" for "&" (Multi30k's English has 16)
    folder = write_folder(tmp_path / "c", {"train": 200})
    with (folder / "train.de").open("a") as f:
        f.write("Salz & Pfeffer\n")
    with (folder / "train.en").open("a") as f:
        f.write("salt &amp; pepper\n")
    prepare_corpus(str(folder), "de", "en", tmp_path / "out", vocab_size=300)
    assert list(read_lines(tmp_path / "out" / "train.en"))[-1] == "salt & pepper"


def test_single_file_corpus_holds_out_a_validation_split(tmp_path):
    table = tmp_path / "phrase-table.gz"
    lines = [f"wort{i} ||| word{i} ||| 0.5 ||| 0-0 ||| 1 1 1\n" for i in range(400)]
    table.write_bytes(gzip.compress("".join(lines).encode()))
    stats = prepare_corpus(
        str(table), "fr", "en", tmp_path / "out", vocab_size=300, valid_percent=5
    )
    assert stats["format"] == "moses"
    assert stats["splits"]["train"]["kept"] + stats["splits"]["val"]["kept"] == 400
    assert 5 <= stats["splits"]["val"]["kept"] <= 40


def test_failure_leaves_nothing_half_written(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "train.de").write_text("a\nb\n")
    (tmp_path / "c" / "train.en").write_bytes(b"a\n\xff\n")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="train.en:2: not valid UTF-8"):
        prepare_corpus(str(tmp_path / "c"), "de", "en", out, vocab_size=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "corpus, src, tgt", [("multi30k", "de", "en"), ("tatoeba-fr-en", "fr", "en")]
)
def test_real_corpora_prepare_and_round_trip(shared_data, tmp_path, corpus, src, tgt):
    out = tmp_path / corpus
    stats = prepare_corpus(str(shared_data / corpus), src, tgt, out, vocab_size=8000)
    assert stats["splits"]["train"]["kept"] > 29000 - 10
    src_tok, tgt_tok, _ = load_tokenizers(out)
    lengths = {}
    for lang, tok in ((src, src_tok), (tgt, tgt_tok)):
        lines = list(read_lines(out / f"train.{lang}"))
        ids = tok.encode(lines)
        assert tok.decode(ids) == lines  # exact round trip after cleaning
        lengths[lang] = [len(x) + 1 for x in ids]
    if corpus == "multi30k":
        batches = make_batches(lengths[src], lengths[tgt], 4000, seed=1, epoch=0)
        assert padding_efficiency(batches, lengths[src], lengths[tgt]) >= 0.9


def _unrelated_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize(("src", "tgt"), [("de", "de"), ("de", ""), ("de/x", "en"), ("d e", "en")])
def test_language_codes_that_cannot_name_the_files_are_refused(tiny_corpus, tmp_path, src, tgt):
    # one code for both sides wrote train.de twice, the target over the source
    with pytest.raises(DataError, match="language"):
        prepare_corpus(str(tiny_corpus), src, tgt, tmp_path / "out", vocab_size=300)
    assert not any(tmp_path.iterdir())


def test_out_that_is_not_a_prepared_folder_is_refused_and_kept(tiny_corpus, tmp_path, monkeypatch):
    user = _unrelated_folder(tmp_path / "user")
    monkeypatch.chdir(user)
    refused = [
        user,  # --out .
        tmp_path,  # a parent of the working folder
        tiny_corpus,  # the corpus itself
        tiny_corpus.parent,  # the folder above the corpus
    ]
    for out in refused:
        with pytest.raises(DataError, match="--out"):
            prepare_corpus(str(tiny_corpus), "de", "en", out, vocab_size=300)
    assert (user / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tiny_corpus.iterdir()) == sorted(
        f"{s}.{lang}" for s in ("train", "val", "test") for lang in ("de", "en")
    )
    other = _unrelated_folder(tmp_path / "other")
    with pytest.raises(DataError, match="holds files prepare did not write"):
        prepare_corpus(str(tiny_corpus), "de", "en", other, vocab_size=300)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "user"]


def test_a_prepared_folder_is_replaced_unless_it_holds_user_files(tiny_corpus, tmp_path):
    out = tmp_path / "p"
    prepare_corpus(str(tiny_corpus), "de", "en", out, vocab_size=300)
    prepare_corpus(str(tiny_corpus), "de", "en", out, vocab_size=300, joint=True)
    assert json.loads((out / "stats.json").read_text())["tokenizer"]["joint"]
    assert not (out / "spm.de.model").exists()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="notes.txt"):
        prepare_corpus(str(tiny_corpus), "de", "en", out, vocab_size=300)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_truncated_gzip_corpus_is_one_data_error(tmp_path):
    folder = write_folder(tmp_path / "c", {"train": 2000}, gz=True)
    data = (folder / "train.en.gz").read_bytes()
    (folder / "train.en.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        prepare_corpus(str(folder), "de", "en", tmp_path / "out", vocab_size=300)
    assert not (tmp_path / "out").exists()


def test_several_corpora_train_together_and_keep_their_dev_sets(tiny_corpus, tmp_path):
    other = write_folder(tmp_path / "other-corpus.gz", {"train": 100, "valid": 7}, gz=True)
    single = prepare_corpus(str(tiny_corpus), "de", "en", tmp_path / "one", vocab_size=300)
    stats = prepare_corpus(
        [str(tiny_corpus), str(other)], "de", "en", tmp_path / "both", vocab_size=300
    )
    name = tiny_corpus.name
    assert stats["dev_sets"] == [f"val.{name}", "val.other-corpus"]
    assert stats["splits"]["train"]["kept"] == 300 + 100
    assert stats["splits"][f"val.{name}"]["kept"] == 20
    assert stats["splits"]["val.other-corpus"]["kept"] == 7
    assert stats["splits"][f"test.{name}"]["kept"] == 20
    assert stats["corpora"]["other-corpus"]["splits"]["train"]["kept"] == 100
    assert stats["corpora"][name]["splits"]["train"]["kept"] == 300
    lines = (tmp_path / "both" / "train.en").read_text().splitlines()
    assert lines[:300] == (tmp_path / "one" / "train.en").read_text().splitlines()
    assert "dev_sets" not in single and single["corpus"] == str(tiny_corpus)
    src, tgt, _ = load_tokenizers(tmp_path / "both")
    assert src.vocab_size == tgt.vocab_size == 300
