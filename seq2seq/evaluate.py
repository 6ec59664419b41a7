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


def length_buckets(edges: list[int]) -> list[tuple[int, int | None]]:
    """(first, last) source lengths in words of each bucket; the last bucket is open."""
    bounds = [1, *(edge + 1 for edge in edges)]
    return [(low, high - 1) for low, high in zip(bounds, bounds[1:])] + [(bounds[-1], None)]


def score_by_length(
    sources: list[str], hypotheses: list[str], references: list[str], edges: list[int]
) -> list[dict]:
    """BLEU and chrF of the sentences in each source-length bucket (Cho et al. 2014b, Fig. 4).

    Returns:
        Per bucket: {"bucket": "1-10", "sentences", "bleu", "chrf"} (scores None when empty).
    """
    if not len(sources) == len(hypotheses) == len(references):
        raise DataError(
            f"{len(sources)} sources, {len(hypotheses)} hypotheses, {len(references)} references"
        )
    rows = []
    for low, high in length_buckets(edges):
        chosen = [
            i
            for i, s in enumerate(sources)
            if low <= len(s.split()) and (high is None or len(s.split()) <= high)
        ]
        row = {"bucket": f"{low}-{high}" if high else f"{low}+", "sentences": len(chosen)}
        if chosen:
            scores = score_corpus([hypotheses[i] for i in chosen], [references[i] for i in chosen])
            row.update(bleu=scores["bleu"], chrf=scores["chrf"])
        else:
            row.update(bleu=None, chrf=None)
        rows.append(row)
    return rows
