"""BLEU and chrF with sacreBLEU, reported with their signatures."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF

from seq2seq.data import DataError


def score_corpus(hypotheses: list[str], references: list[str]) -> dict[str, float | str]:
    """Corpus BLEU (13a, cased) and chrF of detokenised text, with signatures.

    Args:
        hypotheses: system output, one sentence each.
        references: one reference per hypothesis.

    Raises:
        DataError: different line counts, or no lines.

    Returns:
        {"bleu", "bleu_signature", "chrf", "chrf_signature"}.
    """
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not references:
        raise DataError("no lines to score")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return {
        "bleu": round(bleu_score.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf": round(chrf_score.score, 2),
        "chrf_signature": str(chrf.get_signature()),
    }
