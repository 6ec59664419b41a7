"""Sentence-level scores: log p(e|f) of sentence pairs and of n-best list entries.

The sentence-level partner of `score-phrases`: a Moses n-best list
(`id ||| hypothesis ||| features ||| total`, Marian's has the same fields)
gets ` NAME= log p(e|f)` appended to the features of every line, every other
byte kept, so that the model becomes one more feature for n-best rescoring.
NAME is Seq2Seq0, or the first Seq2SeqN the list does not name yet (a list from
`translate --nbest-format moses` holds the search's score as Seq2Seq0): a name
twice in a line would be one feature to Moses' and Marian's tuners.
Everything streams in chunks and is scored through `Translator.score_ids`,
the forced-decoding path of dev loss and phrase scoring.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from tqdm import tqdm

from seq2seq.data import MOSES_SEPARATOR, DataError, clean, parsed_lines, split_moses_line
from seq2seq.translate import Translator, release_free_memory

log = logging.getLogger(__name__)

CHUNK_LINES = 5000
BATCH_TOKENS = 6000


@dataclass
class ScoreSettings:
    """How log-probs become scores, and what happens to bad lines."""

    per_token: bool = False  # divide by the target length (tokens + EOS)
    skip_bad: bool = False
    feature: str | None = None  # the n-best feature's name; None: the first Seq2SeqN free
    batch_tokens: int = BATCH_TOKENS
    chunk_lines: int = CHUNK_LINES


def score_sentences(
    translator: Translator, src: list[str], tgt: list[str], per_token: bool, batch_tokens: int
) -> list[float]:
    """log p(tgt | src) of each pair (or per target token), sources cleaned and cut as
    `translate` does."""
    src_ids = translator.encode_sources(src)
    tgt_ids = translator.tgt.encode([clean(t) for t in tgt])
    scores = translator.score_ids(src_ids, tgt_ids, batch_tokens)
    if per_token:
        scores = [s / (len(t) + 1) for s, t in zip(scores, tgt_ids)]
    return scores


def score_pair_stream(
    translator: Translator, pairs: Iterable[tuple[str, str]], settings: ScoreSettings
) -> Iterator[float]:
    """The score of each pair in order, `chunk_lines` pairs at a time."""
    chunk: list[tuple[str, str]] = []
    for pair in tqdm(pairs, unit=" pairs", mininterval=1, disable=None):
        chunk.append(pair)
        if len(chunk) == settings.chunk_lines:
            yield from _score_chunk(translator, chunk, settings)
            chunk = []
            release_free_memory()  # as translate_stream: RSS flat, not rising
    if chunk:
        yield from _score_chunk(translator, chunk, settings)


def _score_chunk(translator, chunk, settings) -> list[float]:
    src, tgt = [p[0] for p in chunk], [p[1] for p in chunk]
    return score_sentences(translator, src, tgt, settings.per_token, settings.batch_tokens)


def parse_nbest_line(line: str) -> tuple[int, list[str]]:
    """(sentence id, fields) of an n-best line: `id ||| text ||| features ||| total`.

    Raises:
        DataError: fewer than 4 fields, or an id that is not a whole number.
    """
    fields = split_moses_line(line)
    if len(fields) < 4:
        raise DataError("fewer than 4 ' ||| ' fields")
    try:
        sentence = int(fields[0])
    except ValueError:
        raise DataError(f"sentence id {fields[0].strip()[:20]!r} is not a whole number") from None
    if sentence < 0:
        raise DataError(f"sentence id {sentence} is negative")
    return sentence, fields


def add_feature(fields: list[str], name: str, value: float) -> str:
    """The line with ` NAME= value` appended to its features field, all else as it was."""
    features = fields[2]
    body = features.rstrip(" ")
    new = f"{body} {name}= {value:.6g}" + features[len(body) :]
    return MOSES_SEPARATOR.join([*fields[:2], new, *fields[3:]])


def feature_names(features: str) -> set[str]:
    """The names in an n-best line's features field: "LM0= -3 TM0= -1 -2" -> {"LM0", "TM0"}."""
    return {token[:-1] for token in features.split() if token.endswith("=")}


def rescore_nbest(
    translator: Translator,
    nbest: IO[bytes],
    name: str,
    sources: Iterator[str],
    sink: IO[bytes],
    settings: ScoreSettings,
) -> dict:
    """Append the model's score to every line of an n-best list, streaming.

    `sources` are the source sentences in order (sentence id 0 first); the
    list must be sorted by id, as decoders write it.

    Returns:
        {"lines": written, "skipped": bad lines dropped (with `skip_bad`), "feature": its name}.
    """
    counts = {"lines": 0, "skipped": 0}
    source = _SourceCursor(sources)
    chunk: list[tuple[list[str], str, str]] = []  # fields, ending, source text
    lines = parsed_lines(nbest, name, parse_nbest_line, settings.skip_bad, counts)
    feature = settings.feature
    for number, (sentence, fields), ending in tqdm(lines, unit=" lines", disable=None):
        taken = feature_names(fields[2])
        if feature is None:  # from the first line: one name for the whole list
            feature = next(f"Seq2Seq{i}" for i in itertools.count() if f"Seq2Seq{i}" not in taken)
        elif feature in taken:
            raise DataError(
                f"{name}:{number}: already has a feature {feature}=; "
                "name the new one with --feature"
            )
        try:
            text = source.line(sentence)
        except DataError as error:  # the list and the sources disagree: never skipped
            raise DataError(f"{name}:{number}: {error}") from None
        chunk.append((fields, ending, text))
        if len(chunk) == settings.chunk_lines:
            _write_rescored(translator, chunk, feature, settings, sink, counts)
            chunk = []
            release_free_memory()
    if chunk:
        _write_rescored(translator, chunk, feature, settings, sink, counts)
    counts["feature"] = feature
    if counts["skipped"]:
        log.warning("skipped %d bad lines", counts["skipped"])
    return counts


def _write_rescored(translator, chunk, feature, settings, sink, counts) -> None:
    src = [text for _, _, text in chunk]
    tgt = [fields[1].strip() for fields, _, _ in chunk]
    scores = score_sentences(translator, src, tgt, settings.per_token, settings.batch_tokens)
    for (fields, ending, _), score in zip(chunk, scores):
        value = score if math.isfinite(score) else -1e30
        sink.write((add_feature(fields, feature, value) + ending).encode("utf-8"))
    counts["lines"] += len(chunk)


class _SourceCursor:
    """The source sentence of an id, reading the sources forward only (constant memory)."""

    def __init__(self, sources: Iterator[str]) -> None:
        self.sources, self.index, self.text = sources, -1, None

    def line(self, sentence: int) -> str:
        if sentence < self.index:
            raise DataError(f"sentence id {sentence} after {self.index}: the list is not sorted")
        while self.index < sentence:
            self.text = next(self.sources, None)
            self.index += 1
            if self.text is None:
                raise DataError(f"sentence id {sentence}: the source file has no such line")
        return self.text
