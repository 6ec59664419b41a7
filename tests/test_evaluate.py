import pytest

from seq2seq.data import DataError
from seq2seq.evaluate import score_corpus


def test_identical_text_scores_100_with_signatures():
    result = score_corpus(["A dog runs .", "Hello"], ["A dog runs .", "Hello"])
    assert result["bleu"] == 100.0 and result["chrf"] == 100.0
    assert "tok:13a" in result["bleu_signature"] and "case:mixed" in result["bleu_signature"]


def test_bleu_is_cased_and_detokenised():
    lower = score_corpus(["a dog runs in the park ."], ["A dog runs in the park ."])
    assert lower["bleu"] < 100.0  # case counts


@pytest.mark.parametrize("hyps, refs", [(["a", "b"], ["a"]), ([], [])])
def test_line_counts_must_match_and_not_be_zero(hyps, refs):
    with pytest.raises(DataError):
        score_corpus(hyps, refs)


def test_scores_by_source_length_bucket():
    from seq2seq.evaluate import length_buckets, score_by_length

    assert length_buckets([10, 20]) == [(1, 10), (11, 20), (21, None)]
    sources = ["a b", "a " * 15, "a " * 40]
    same = "a dog runs in the park today"
    rows = score_by_length(sources, [same, same, "s"], [same, same, "t"], [10, 20, 30])
    assert [r["bucket"] for r in rows] == ["1-10", "11-20", "21-30", "31+"]
    assert [r["sentences"] for r in rows] == [1, 1, 0, 1]
    assert rows[0]["bleu"] == 100.0 and rows[2]["bleu"] is None and rows[3]["bleu"] < 100
