"""BLEU and chrF with sacreBLEU (with their signatures), by length, and on dev sets."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from sacrebleu.metrics import BLEU, CHRF

from seq2seq.data import DataError

if TYPE_CHECKING:
    from seq2seq.translate import Translator

log = logging.getLogger(__name__)


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


def dev_scores(
    translator: Translator,
    dev_sets: dict[str, tuple[list[str], list[str]]],
    batch_tokens: int,
    loss_precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict:
    """Dev loss, perplexity, greedy BLEU and chrF: of the one set, or of each set
    (under "sets") and their means, the mean BLEU being what picks the model.

    Args:
        translator: the model being trained, in eval mode.
        dev_sets: name -> (sources, references).
        batch_tokens: the token budget of the loss batches.
        loss_precision: the context of the loss pass (training's autocast).
    """
    per_set = {
        name: _set_scores(translator, src, ref, batch_tokens, loss_precision)
        for name, (src, ref) in dev_sets.items()
    }
    if len(per_set) == 1:
        return next(iter(per_set.values()))
    log.info("dev BLEU by set: %s", ", ".join(f"{n} {m['bleu']:.2f}" for n, m in per_set.items()))
    mean = {
        key: round(sum(m[key] for m in per_set.values()) / len(per_set), 4 if key == "loss" else 2)
        for key in ("loss", "ppl", "bleu", "chrf")
    }
    return {**mean, "sets": per_set}


def _set_scores(translator, src, ref, batch_tokens, loss_precision) -> dict:
    src_ids, tgt_ids = translator.encode_sources(src), translator.tgt.encode(ref)
    with loss_precision():
        loss = -sum(translator.score_ids(src_ids, tgt_ids, batch_tokens))
    loss /= sum(len(t) + 1 for t in tgt_ids)  # per target token, EOS included
    scores = score_corpus([t.texts[0] for t in translator.translate(src, beam=1)], ref)
    return {
        "loss": round(loss, 4),
        "ppl": round(math.exp(loss), 2),
        "bleu": scores["bleu"],
        "chrf": scores["chrf"],
    }
