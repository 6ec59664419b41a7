"""Moses phrase tables: stream, score every pair with a model, append the feature.

Cho et al. 2014a scored each phrase pair of a phrase-based SMT system with
the RNN Encoder-Decoder and added the score as one more feature of the
log-linear model. `score_table` does that in chunks: a chunk of lines is
parsed, its unique pairs are scored in length-sorted batches, and the lines
are written back in order with only the new score(s) added to the third
field. Memory does not grow with the size of the table. With `pmi` the
score is p(e|f) / p(e|empty source), which separates true pairs from random
ones far better than p(e|f) (README, "Phrase-pair scoring signal").

Line format: `src ||| tgt ||| scores ||| alignment ||| counts [||| ...]`;
older tables have fewer fields, and everything after the scores is copied
through untouched.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from seq2seq.data import (
    MOSES_SEPARATOR,
    DataError,
    collate_sources,
    open_text,
    parsed_lines,
    split_moses_line,
    unescape_xml,
)
from seq2seq.files import atomic_path
from seq2seq.translate import Translator

log = logging.getLogger(__name__)

FLOOR = 1e-30  # Moses takes the log of phrase-table scores: never write 0
CEILING = 1e30  # a --pmi ratio can exceed 1; keep it a finite float
CHUNK_LINES = 20_000
BATCH_TOKENS = 1_500  # source + target tokens per batch; larger batches ran slower (cache)


class PhraseLineError(DataError):
    """A phrase-table line that cannot be scored."""


def parse_line(line: str, scores: int | None = None) -> list[str]:
    """Fields of a phrase-table line (without its line ending); split/join is lossless.

    Args:
        line: one line of the table.
        scores: how many scores every line of this table has, if known.

    Raises:
        PhraseLineError: fewer than three fields, an empty phrase, or a scores
            field that is not `scores` finite positive numbers (Moses takes the
            log of each; a phrase holding ' ||| ' shifts text into this field).
    """
    fields = split_moses_line(line)
    if len(fields) < 3:
        raise PhraseLineError("fewer than 3 ' ||| ' fields")
    if not fields[0].strip() or not fields[1].strip():
        raise PhraseLineError("empty phrase")
    values = fields[2].split()
    if not values:
        raise PhraseLineError("no scores")
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise PhraseLineError(f"scores field {fields[2].strip()[:40]!r} is not numbers") from None
    if not all(math.isfinite(n) and n > 0 for n in numbers):
        raise PhraseLineError(f"scores {fields[2].strip()[:40]!r} are not all finite and > 0")
    if scores is not None and len(values) != scores:
        raise PhraseLineError(f"{len(values)} scores where the table has {scores}")
    return fields


def model_text(phrase: str) -> str:
    """The text the model scores: Moses escapes & < > ' " [ ] | as XML entities,
    and the models are trained on raw text."""
    return unescape_xml(phrase.strip())


def format_line(fields: list[str], new_scores: list[str]) -> str:
    """The line with `new_scores` appended to the scores field, all else as it was."""
    scores = fields[2]
    joiner = "" if not scores or scores.endswith(" ") else " "
    new = [*fields[:2], scores + joiner + " ".join(new_scores), *fields[3:]]
    return MOSES_SEPARATOR.join(new)


def format_score(log_prob: float, length: int, as_log: bool, per_token: bool) -> str:
    """One feature value: a probability (or --pmi ratio) kept in [FLOOR, CEILING], or its log."""
    value = log_prob / length if per_token else log_prob
    value = min(max(value, math.log(FLOOR)), math.log(CEILING))
    return f"{value:.6g}" if as_log else f"{math.exp(value):.6g}"


@dataclass
class ScoreOptions:
    """How `score_table` turns log-probs into features, and what it does with bad lines."""

    as_log: bool = False
    per_token: bool = False
    pmi: bool = False
    skip_bad: bool = False
    scores: int | None = None  # scores per line; None: as many as the first good line
    chunk_lines: int = CHUNK_LINES
    batch_tokens: int = BATCH_TOKENS


def open_table(path: str | Path) -> IO[bytes]:
    """A phrase table as bytes: a file or `-` (stdin), gzip detected from the bytes."""
    if str(path) != "-":
        return open_text(path)
    stream = sys.stdin.buffer
    if stream.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)
    return stream


def _per_unique(function: Callable[[list[str]], list], texts: list[str]) -> list:
    """`function` of each text, called on the unique texts only: a phrase repeated
    in the chunk is encoded (or scored) once."""
    unique = list(dict.fromkeys(texts))
    results = dict(zip(unique, function(unique)))
    return [results[text] for text in texts]


def score_pairs(
    translator: Translator, src: list[str], tgt: list[str], batch_tokens: int = BATCH_TOKENS
) -> tuple[list[float], list[int]]:
    """log p(tgt | src) for each pair, and the scored length (target tokens + EOS)."""
    src_ids = _per_unique(translator.src.encode, src)
    tgt_ids = _per_unique(translator.tgt.encode, tgt)
    return translator.score_ids(src_ids, tgt_ids, batch_tokens), [len(t) + 1 for t in tgt_ids]


def prior_log_probs(
    translator: Translator, texts: list[str], batch_tokens: int = BATCH_TOKENS
) -> list[float]:
    """log p(text | empty source): the model's prior of each target, once per unique text.

    The conditional log p(e|f) is dominated by how likely e is on its own
    (short, frequent phrases win whatever the source); subtracting this prior
    leaves how much the source raises the target, a pointwise mutual information.
    """
    return _per_unique(
        lambda unique: score_pairs(translator, [""] * len(unique), unique, batch_tokens)[0], texts
    )


def score_table(
    table: str | Path,
    output: str | Path | None,
    translator: Translator,
    reverse: Translator | None = None,
    options: ScoreOptions | None = None,
) -> dict[str, int]:
    """Append p(tgt|src) (and p(src|tgt) with `reverse`) to every line of a table.

    Output goes to a temporary file renamed at the end (gzip if the name ends
    in .gz), or to stdout when `output` is None.

    Returns:
        {"lines": written lines, "skipped": bad lines dropped}.
    """
    options = options or ScoreOptions()
    counts = {"lines": 0, "skipped": 0}
    with contextlib.ExitStack() as stack:
        sink = sys.stdout.buffer
        if output:
            tmp = stack.enter_context(atomic_path(output))
            sink = _open_output(tmp, str(output).endswith(".gz"), stack)
        source = stack.enter_context(open_table(table))
        for chunk in _chunks(source, table, options, counts):
            for line in _score_chunk(chunk, translator, reverse, options):
                sink.write(line)
            counts["lines"] += len(chunk)
        sink.flush()
    if counts["skipped"]:
        log.warning("skipped %d bad lines", counts["skipped"])
    return counts


def _open_output(path: Path, compress: bool, stack: contextlib.ExitStack) -> IO[bytes]:
    raw = stack.enter_context(path.open("wb"))
    if compress:  # no name or time in the header: same input, same bytes
        return stack.enter_context(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename=""))
    return raw


def _chunks(
    source: IO[bytes], name: str | Path, options: ScoreOptions, counts: dict[str, int]
) -> Iterator[list[tuple[list[str], str]]]:
    """Lists of (fields, line ending), `chunk_lines` at a time; bad lines raise or skip."""
    expected = [options.scores]  # scores per line: the ini's, else the first good line's

    def parse(text: str) -> list[str]:
        fields = parse_line(text, expected[0])
        expected[0] = len(fields[2].split())
        return fields

    chunk = []
    for _, fields, ending in parsed_lines(source, name, parse, options.skip_bad, counts):
        chunk.append((fields, ending))
        if len(chunk) == options.chunk_lines:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _score_chunk(
    chunk: list[tuple[list[str], str]],
    translator: Translator,
    reverse: Translator | None,
    options: ScoreOptions,
) -> Iterator[bytes]:
    """Score the chunk's unique pairs once each, then yield its lines in order."""
    pairs = list(dict.fromkeys((f[0].strip(), f[1].strip()) for f, _ in chunk))
    src, tgt = [model_text(p[0]) for p in pairs], [model_text(p[1]) for p in pairs]
    features = [[] for _ in pairs]
    models = [(translator, src, tgt)] + ([(reverse, tgt, src)] if reverse else [])
    for model, given, predicted in models:
        log_probs, lengths = score_pairs(model, given, predicted, options.batch_tokens)
        if options.pmi:
            prior = prior_log_probs(model, predicted, options.batch_tokens)
            log_probs = [value - base for value, base in zip(log_probs, prior)]
        for row, (value, length) in enumerate(zip(log_probs, lengths)):
            features[row].append(format_score(value, length, options.as_log, options.per_token))
    by_pair = dict(zip(pairs, features))
    for fields, ending in chunk:
        new = by_pair[(fields[0].strip(), fields[1].strip())]
        yield (format_line(fields, new) + ending).encode("utf-8")


@dataclass
class MosesIni:
    """A rewritten moses.ini and what changed in it."""

    text: str
    feature: str  # the phrase table's feature name, e.g. TranslationModel0
    scores: int  # the table's scores before the new ones
    binarized_path: str | None  # a PhraseDictionaryCompact's new path, to be built


TEXT_TABLE, COMPACT_TABLE = "PhraseDictionaryMemory", "PhraseDictionaryCompact"


def update_moses_ini(text: str, table_path: str, added: int, weight: float = 0.2) -> MosesIni:
    """A moses.ini whose phrase table has `added` more features, a new path and weights.

    A text table (PhraseDictionaryMemory) points at `table_path`; a compact one
    (PhraseDictionaryCompact) at the `.minphr` that processPhraseTableMin will
    build from it. `num-features` is written even where the line had none.

    Raises:
        DataError: no phrase-table line, another table type, no `name=`, no
            weight line, or a `num-features` that disagrees with the weights.
    """
    lines = text.splitlines(keepends=True)
    index = next((i for i, line in enumerate(lines) if line.startswith("PhraseDictionary")), None)
    if index is None:
        raise DataError("moses.ini: no PhraseDictionary feature line")
    line = lines[index]
    kind = line.split()[0]
    if kind not in (TEXT_TABLE, COMPACT_TABLE):
        raise DataError(f"moses.ini: {kind} is not supported; use {TEXT_TABLE} or {COMPACT_TABLE}")
    name = re.search(r"\bname=(\S+)", line)
    if not name:
        raise DataError(f"moses.ini: the {kind} line has no name=; add name=TranslationModel0")
    name = name.group(1)
    weight_index = next((i for i, w in enumerate(lines) if w.startswith(f"{name}=")), None)
    if weight_index is None:
        raise DataError(f"moses.ini: no weight line '{name}= ...' for the phrase table")
    body = lines[weight_index].rstrip("\r\n")
    scores = len(body.split("=", 1)[1].split())
    declared = re.search(r"\bnum-features=(\d+)", line)
    if declared and int(declared.group(1)) != scores:
        raise DataError(
            f"moses.ini: {name} has num-features={declared.group(1)} but {scores} weights"
        )
    path = table_path
    binarized = None
    if kind == COMPACT_TABLE:
        path = binarized = re.sub(r"(\.gz)?$", "", table_path, count=1) + ".minphr"
    lines[index] = _set_option(_set_option(line, "num-features", str(scores + added)), "path", path)
    lines[weight_index] = body + f" {weight:g}" * added + lines[weight_index][len(body) :]
    return MosesIni("".join(lines), name, scores, binarized)


def _set_option(line: str, key: str, value: str) -> str:
    """`key=value` in a moses.ini feature line: replaced where present, else appended."""
    body = line.rstrip("\r\n")
    pattern = rf"\b{key}=\S+"
    new = (
        re.sub(pattern, lambda _: f"{key}={value}", body)
        if re.search(pattern, body)
        else (f"{body} {key}={value}")
    )
    return new + line[len(body) :]


@torch.inference_mode()
def phrase_space(translator: Translator, phrases: list[str]) -> torch.Tensor:
    """The encoder summaries c of `phrases`, projected to 2-D by PCA: [N, 2]."""
    ids = translator.encode_sources(phrases)
    src_ids, src_lengths = collate_sources(ids)
    encoded = translator.model.encode(
        src_ids.to(translator.device), src_lengths.to(translator.device)
    )
    summary = encoded.summary.float().cpu()
    centred = summary - summary.mean(dim=0)
    _, _, components = torch.linalg.svd(centred, full_matrices=False)
    return centred @ components[:2].T


def read_phrases(path: str | Path) -> list[str]:
    """Non-empty lines of a text file (a leading byte order mark is no text)."""
    with io.TextIOWrapper(open_text(path), encoding="utf-8-sig", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]
