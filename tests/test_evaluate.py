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
