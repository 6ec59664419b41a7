import gzip

import pytest
from helpers import make_pairs, pipe_path, write_folder

from seq2seq import data
from seq2seq.data import (
    BATCH_MULTIPLE,
    DataError,
    clean,
    collate,
    corpus_format,
    drop_reason,
    make_batches,
    padding_efficiency,
    read_folder,
    read_moses,
    read_tsv,
    split_by_length,
    token_batches,
    unescape_xml,
)
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID


def test_clean_normalises_spaces_and_unicode():
    assert clean("  Quoi\u202f?  Oui\u00a0! \t") == "Quoi ? Oui !"
    assert clean("Cafe\u0301") == "Café"  # NFC


def test_clean_drops_invisible_characters_that_split_words():
    # soft hyphens and zero-width spaces come with text copied from web pages (20 in the
    # default model's training text), control characters with text from terminals
    assert (
        clean("Bahn\u00adhof Bahn\u200bhof\u200e \u2060ja\ufeff\x07\x1b!") == "Bahnhof Bahnhof ja!"
    )
    assert clean("👩\u200d💻") == "👩\u200d💻"  # the joiner of an emoji sequence stays
    assert clean("\x1b[1;31mHallo\x1b[0m Welt") == "Hallo Welt"  # grep --color=always | ...


def test_xml_escapes_are_undone_and_other_ampersands_kept():
    # Multi30k's English has "stone &amp; tile"; Moses tools escape & < > ' " [ ] |
    assert unescape_xml("stone &amp; tile &lt;3 &quot;hi&quot; &apos;s &#91;x&#93; &#124;") == (
        'stone & tile <3 "hi" \'s [x] |'
    )
    # not entities of XML's: left as typed ("&not" would be "¬" to html.unescape)
    assert unescape_xml("AT&T; Tom &not here &copy; &amp") == "AT&T; Tom &not here &copy; &amp"


def test_drop_reasons():
    assert drop_reason("", "a", 10, 3) == "empty"
    assert drop_reason("a " * 11, "a", 10, 3) == "too_long"
    assert drop_reason("a a a a", "a", 10, 3) == "length_ratio"
    assert drop_reason("a b", "c d e", 10, 3) is None


@pytest.mark.parametrize("gz", [False, True])
def test_read_folder_plain_and_gzip(tmp_path, gz):
    folder = write_folder(tmp_path, {"train": 5}, gz=gz)
    pairs = list(read_folder(folder, "train", "de", "en"))
    assert pairs == make_pairs(5, seed=0)  # the same text, in order
    assert corpus_format(str(folder)) == "folder"


def test_different_line_counts_is_an_error(tmp_path):
    (tmp_path / "train.de").write_text("a\nb\nc\n")
    (tmp_path / "train.en").write_text("a\nb\n")
    with pytest.raises(DataError, match="train.en has 2 lines but .*train.de has more"):
        list(read_folder(tmp_path, "train", "de", "en"))


def test_invalid_utf8_names_file_and_line(tmp_path):
    (tmp_path / "train.de").write_bytes(b"gut\nschl\xffcht\n")
    (tmp_path / "train.en").write_text("good\nbad\n")
    with pytest.raises(DataError, match=r"train.de:2: not valid UTF-8"):
        list(read_folder(tmp_path, "train", "de", "en"))


def test_a_byte_order_mark_is_not_text(tmp_path):
    # Notepad's "UTF-8 with BOM": the mark says how the file is encoded, it is not a character
    # of the first sentence
    (tmp_path / "train.de").write_bytes("\ufeffgut\nschlecht\n".encode())
    (tmp_path / "train.en").write_bytes("\ufeffgood\nbad\n".encode())
    pairs = list(read_folder(tmp_path, "train", "de", "en"))
    assert pairs == [("gut", "good"), ("schlecht", "bad")]


@pytest.mark.parametrize("gz", [False, True])
def test_a_pipe_is_read_whole(gz):
    # `--ref <(zcat ref.gz)`: the gzip check must not eat the start of a stream it cannot reopen
    lines = [f"line {i} " + "x" * 50 for i in range(2000)]  # well over a pipe's first read
    body = "".join(line + "\n" for line in lines).encode()
    with pipe_path(gzip.compress(body) if gz else body) as path:
        assert list(data.read_lines(path)) == lines


def test_the_format_of_a_pipe_must_be_given(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match="--format"):
        corpus_format(str(tmp_path / "fifo"))  # without opening it: nothing waits on a writer


def test_missing_split_file(tmp_path):
    (tmp_path / "train.de").write_text("a\n")
    with pytest.raises(DataError, match="missing train.en"):
        list(read_folder(tmp_path, "train", "de", "en"))


def test_tsv_and_moses(tmp_path):
    tsv = tmp_path / "c.tsv"
    tsv.write_text("ein Hund\ta dog\nHaus\thouse\n")
    assert list(read_tsv(tsv)) == [("ein Hund", "a dog"), ("Haus", "house")]
    assert corpus_format(str(tsv)) == "tsv"
    tsv.write_text("DE\tEn\nein Hund\ta dog\tmore\n")  # a header naming the languages
    assert list(read_tsv(tsv, header=("de", "en"))) == [("ein Hund", "a dog")]
    assert list(read_tsv(tsv))[0] == ("DE", "En")  # scored as any pair: one score a line
    tsv.write_text("1234\tein Hund\t5678\ta dog\n")  # Tatoeba's export of sentence pairs
    assert list(read_tsv(tsv)) == [("ein Hund", "a dog")]
    table = tmp_path / "phrase-table.gz"
    table.write_bytes(
        gzip.compress(
            b"das ||| the ||| 0.3 ||| 0-0 ||| 1 1 1\n"
            b"das ||| the ||| 0.3 ||| 0-0 ||| 1 1 1\n"
            b"Haus ||| house ||| 0.5 ||| ||| \n"
        )
    )
    assert list(read_moses(table)) == [("das", "the"), ("Haus", "house")]
    assert corpus_format(str(table)) == "moses"
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n")
    with pytest.raises(DataError, match="bad.tsv:1: expected source<TAB>target"):
        list(read_tsv(bad))


def test_hub_offline_fails_at_once_with_advice(monkeypatch):
    monkeypatch.setattr(data, "_hub_reachable", lambda: False)
    assert corpus_format("bentrevett/multi30k") == "hub"
    with pytest.raises(DataError, match="pass a local folder"):
        next(data.read_hub("bentrevett/multi30k", "train", "de", "en"))


def test_missing_corpus_path():
    with pytest.raises(DataError, match="no such file or folder"):
        corpus_format("./not/here")


def test_collate_adds_bos_eos_and_padding():
    batch = collate([[5, 6], [7]], [[8], [9, 10]])
    assert batch.src_ids.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, PAD_ID], [BOS_ID, 9, 10]]
    assert batch.tgt_out.tolist() == [[8, EOS_ID, PAD_ID], [9, 10, EOS_ID]]
    assert batch.num_tokens == 5


def random_lengths(n, seed=0):
    import random

    rng = random.Random(seed)
    return [rng.randint(2, 40) for _ in range(n)], [rng.randint(2, 40) for _ in range(n)]


def test_batches_cover_every_pair_once_and_respect_the_budget():
    src, tgt = random_lengths(2000)
    batches = make_batches(src, tgt, batch_tokens=600, seed=3, epoch=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(2000))
    for b in batches:
        assert len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b)) <= 600
    assert padding_efficiency(batches, src, tgt) > 0.8


def test_training_batches_hold_a_multiple_of_batch_multiple_pairs_within_the_budget():
    src, tgt = random_lengths(3000)
    batches = make_batches(src, tgt, batch_tokens=6000, seed=3, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(3000))
    odd = [b for b in batches if len(b) % BATCH_MULTIPLE]
    assert len(odd) <= 1  # the longest pairs' batch, cut last
    for b in batches:
        assert len(b) * (max(src[i] for i in b) + max(tgt[i] for i in b)) <= 6000


def test_token_batches_leave_batches_under_the_multiple_whole():
    lengths = [30] * 10  # ten items of 60 padded tokens: at most 5 a batch under 300
    batches = list(token_batches(list(range(10)), 300, lengths, lengths, multiple=4))
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(token_batches(list(range(10)), 300, lengths, lengths, multiple=8)) == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
    ]


def test_batches_are_deterministic_per_seed_and_epoch():
    src, tgt = random_lengths(500)
    first = make_batches(src, tgt, 300, seed=1, epoch=0)
    assert first == make_batches(src, tgt, 300, seed=1, epoch=0)
    assert first != make_batches(src, tgt, 300, seed=1, epoch=1)
    assert first != make_batches(src, tgt, 300, seed=2, epoch=0)


def test_a_pair_longer_than_the_budget_gets_its_own_batch():
    batches = make_batches([100, 3, 3], [100, 3, 3], batch_tokens=50, seed=0, epoch=0)
    assert [0] in batches and sorted(i for b in batches for i in b) == [0, 1, 2]


def test_a_missing_relative_path_is_named_as_missing(tmp_path, monkeypatch):
    from seq2seq.data import read_hub

    monkeypatch.setattr("seq2seq.data._hub_reachable", lambda: False)
    with pytest.raises(DataError, match="no such file or folder"):
        next(read_hub("data/nope-de-en", "train", "de", "en"))


def test_split_by_length_makes_the_costliest_run_as_cheap_as_it_can_be():
    lengths = [1, 1, 1, 1, 1, 5, 2, 2]
    assert split_by_length([0, 1, 2, 3, 4, 5], lengths, 2) == [[0, 1, 2, 3, 4], [5]]
    runs = split_by_length(list(range(8)), lengths, 3)
    assert [i for run in runs for i in run] == list(range(8)) and len(runs) == 3
    assert split_by_length([7, 6], lengths, 5) == [[7], [6]]  # no more runs than items
    assert split_by_length([3, 1], lengths, 1) == [[3, 1]]
    assert split_by_length([], lengths, 2) == []


def test_split_by_length_counts_a_cost_per_step_of_the_longest():
    lengths = [2, 2, 2, 2, 3, 3, 4, 4]
    assert split_by_length(list(range(8)), lengths, 2) == [[0, 1, 2, 3, 4], [5, 6, 7]]
    # 2+2+2+2+3+3 + 5 * 3 = 29 against 4+4 + 5 * 4 = 28: the long run gives one away
    runs = split_by_length(list(range(8)), lengths, 2, step_cost=5)
    assert runs == [[0, 1, 2, 3, 4, 5], [6, 7]]
