"""Parallel corpora: reading, cleaning, filtering, and token-bucketed batching.

Corpora are streamed pair by pair (WMT14 En-Fr has 36M pairs), so nothing
here holds a whole raw corpus in memory. Supported sources: a local folder
of `{split}.{lang}[.gz]` files, a TSV file, a Moses phrase table, and a
datasets hub name (needs the network or the local cache).
"""

from __future__ import annotations

import gzip
import hashlib
import html
import random
import re
import socket
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from seq2seq.errors import Seq2SeqError
from seq2seq.tokenizer import BOS_ID, EOS_ID, PAD_ID

# Splits tried, in order, for the train / validation / test roles.
SPLIT_NAMES = {
    "train": ("train",),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test_2016_flickr", "test"),
}


GZIP_MAGIC = b"\x1f\x8b"
BYTE_ORDER_MARK = "\ufeff".encode()
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# invisible: a terminal's colour codes (ESC [ ... m), control characters (not those Python
# counts as whitespace), the soft hyphen, zero-width space, marks of direction, word joiner
# and a byte order mark within the text; not emoji's joiner (U+200D)
INVISIBLE = re.compile(
    "\x1b\\[[0-?]*[ -/]*[@-~]"
    "|[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u00ad\u200b\u200e\u200f\u2060\ufeff]"
)
# XML's escapes, which Moses tools write for & < > ' " [ ] | and some corpora carry
# (Multi30k's English: "stone &amp; tile"); not HTML's other names ("&not" is text)
XML_ESCAPE = re.compile(r"&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);")


class DataError(Seq2SeqError):
    """A corpus cannot be read; the message says which file and line."""


def open_text(path: str | Path) -> IO[bytes]:
    """Open a plain or gzip file as bytes; gzip is detected from the magic bytes.

    The file is opened once and its first bytes only peeked at, so that a pipe
    (`--ref <(zcat ref.gz)`), which cannot be read again, loses nothing.
    """
    f = Path(path).open("rb")  # noqa: SIM115 (returned open: the caller closes it)
    return _GzipReader(f) if f.peek(2)[:2] == GZIP_MAGIC else f


class _GzipReader(gzip.GzipFile):
    """gzip.GzipFile over an open file, which it closes with itself."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(fileobj=file, mode="rb")
        self.file = file

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.file.close()


def raw_lines(stream: IO[bytes], name: str | Path) -> Iterator[bytes]:
    """The lines of a byte stream, without a leading UTF-8 byte order mark (Notepad's
    "UTF-8 with BOM"); a truncated or corrupt gzip stream is a `DataError`."""
    try:
        for number, line in enumerate(stream):
            yield line.removeprefix(BYTE_ORDER_MARK) if number == 0 else line
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{name}: truncated or corrupt gzip file ({error})") from None


def parsed_lines(
    stream: IO[bytes],
    name: str | Path,
    parse: Callable[[str], Any],
    skip_bad: bool,
    counts: dict[str, int],
) -> Iterator[tuple[int, Any, str]]:
    """(line number, parse(line), line ending) of each line of a byte stream.

    A line that is not UTF-8 or that `parse` refuses (a `DataError`) stops
    everything with file:line, or, with `skip_bad`, is dropped and counted in
    `counts["skipped"]`.
    """
    for number, raw in enumerate(raw_lines(stream, name), 1):
        body = raw.rstrip(b"\r\n")
        ending = raw[len(body) :].decode("ascii")
        try:
            parsed = parse(body.decode("utf-8"))
        except (UnicodeDecodeError, DataError) as error:
            reason = "not valid UTF-8" if isinstance(error, UnicodeDecodeError) else str(error)
            if not skip_bad:
                raise DataError(
                    f"{name}:{number}: {reason} (use --skip-bad to drop such lines)"
                ) from None
            counts["skipped"] += 1
            continue
        yield number, parsed, ending


def read_lines(path: str | Path) -> Iterator[str]:
    """Lines of a UTF-8 file without the newline; bad UTF-8 names file and line."""
    with open_text(path) as f:
        for number, raw in enumerate(raw_lines(f, path), 1):
            try:
                yield raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise DataError(f"{path}:{number}: not valid UTF-8") from None


def clean(text: str) -> str:
    """NFC, no-break spaces to spaces, whitespace collapsed, lone surrogates replaced,
    invisible characters dropped."""
    text = LONE_SURROGATE.sub("\ufffd", text)  # a Python str can hold them; UTF-8 cannot
    text = INVISIBLE.sub("", text)
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.replace("\u00a0", " ").replace("\u202f", " ").split())


def unescape_xml(text: str) -> str:
    """XML escapes (`&amp;`, `&#91;`, ...) as the characters they stand for."""
    return XML_ESCAPE.sub(lambda m: html.unescape(m.group()), text)


def drop_reason(src: str, tgt: str, max_words: int, max_ratio: float) -> str | None:
    """Why a cleaned pair is dropped, or None to keep it."""
    if not src or not tgt:
        return "empty"
    src_words, tgt_words = len(src.split()), len(tgt.split())
    if max(src_words, tgt_words) > max_words:
        return "too_long"
    if max(src_words, tgt_words) > max_ratio * min(src_words, tgt_words):
        return "length_ratio"
    return None


def split_file(folder: Path, split: str, lang: str) -> Path | None:
    """`folder/split.lang` or its `.gz`, or None."""
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def folder_splits(folder: Path, src: str, tgt: str) -> dict[str, str]:
    """Map each role (train/val/test) to the split name present in `folder`."""
    found = {}
    for role, names in SPLIT_NAMES.items():
        for name in names:
            if split_file(folder, name, src) or split_file(folder, name, tgt):
                found[role] = name
                break
    if "train" not in found:
        raise DataError(f"{folder}: no train.{src} / train.{tgt} files")
    return found


def read_folder(folder: Path, split: str, src: str, tgt: str) -> Iterator[tuple[str, str]]:
    """Pairs from `split.src` and `split.tgt`; different line counts are an error."""
    paths = [split_file(folder, split, lang) for lang in (src, tgt)]
    for path, lang in zip(paths, (src, tgt), strict=True):
        if path is None:
            raise DataError(f"{folder}: missing {split}.{lang}[.gz]")
    yield from read_parallel(*paths)


def read_parallel(src_path: Path, tgt_path: Path) -> Iterator[tuple[str, str]]:
    """Pairs of lines of two files; different line counts are an error."""
    paths = [src_path, tgt_path]
    src_lines, tgt_lines = read_lines(paths[0]), read_lines(paths[1])
    count = 0
    for src_line in src_lines:
        tgt_line = next(tgt_lines, None)
        if tgt_line is None:
            raise DataError(f"{paths[1]} has {count} lines but {paths[0]} has more")
        count += 1
        yield src_line, tgt_line
    if next(tgt_lines, None) is not None:
        raise DataError(f"{paths[0]} has {count} lines but {paths[1]} has more")


def read_tsv(path: Path, header: tuple[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """Pairs from `src<TAB>tgt` lines (further columns ignored), or from Tatoeba's export
    of sentence pairs, `id<TAB>src<TAB>id<TAB>tgt`. A first line that reads `header`
    (the language codes, any case) names the columns and is skipped."""
    for number, line in enumerate(read_lines(path), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected source<TAB>target")
        if len(fields) == 4 and fields[0].isdigit() and fields[2].isdigit():
            fields = fields[1::2]
        if number == 1 and header and tuple(f.strip().lower() for f in fields[:2]) == header:
            continue
        yield fields[0], fields[1]


MOSES_SEPARATOR = " ||| "


def split_moses_line(line: str) -> list[str]:
    """The fields of a Moses phrase-table line; joining them with the separator is lossless."""
    return line.split(MOSES_SEPARATOR)


def read_moses(path: Path) -> Iterator[tuple[str, str]]:
    """Unique phrase pairs of a Moses phrase table (the Cho et al. 2014a setting).

    A table lists each pair once, sorted by source, so only repeats next to each
    other are dropped and memory stays constant.
    """
    previous = None
    for number, line in enumerate(read_lines(path), 1):
        fields = split_moses_line(line)
        if len(fields) < 3:
            raise DataError(f"{path}:{number}: not a Moses phrase-table line")
        pair = (fields[0].strip(), fields[1].strip())
        if pair != previous:
            yield pair
        previous = pair


def read_hub(name: str, split: str, src: str, tgt: str) -> Iterator[tuple[str, str]]:
    """Pairs from a datasets hub corpus, `owner/name` or `name:config`."""
    import datasets  # slow import, only needed here

    if not _hub_reachable():
        raise DataError(
            f"{name}: no such file or folder, and the datasets hub cannot be reached "
            "(offline?) to look it up as a corpus name; pass a local folder of "
            "{split}.{lang}[.gz] files instead"
        )
    path, _, subset = name.partition(":")
    try:
        corpus = datasets.load_dataset(path, subset or None, split=split, streaming=True)
    except Exception as error:  # the hub raises many types; the message is what matters
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise DataError(f"{name} ({split}): {type(error).__name__}: {first_line}") from None
    for row in corpus:
        row = row.get("translation", row)
        yield row[src], row[tgt]


HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}  # the hub's names


def _hub_reachable() -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        return False
    return True


def corpus_format(corpus: str) -> str:
    """Guess the format of a corpus argument: folder, tsv, moses or hub."""
    path = Path(corpus)
    if path.is_dir():
        return "folder"
    if path.is_file():
        with open_text(path) as f:
            first = f.readline().decode("utf-8", errors="replace")
        return "moses" if MOSES_SEPARATOR in first else "tsv"
    if path.exists():  # a pipe such as <(zcat corpus.tsv.gz): its first line cannot be read twice
        raise DataError(f"{corpus}: not a regular file; give its --format (tsv or moses)")
    if "/" in corpus.strip("./") and not corpus.startswith((".", "/")) or ":" in corpus:
        return "hub"
    raise DataError(f"{corpus}: no such file or folder")


def is_held_out(src: str, tgt: str, percent: float) -> bool:
    """Stable hash split for single-file corpora (TSV, phrase tables)."""
    digest = hashlib.md5(f"{src}\t{tgt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 10_000 < percent * 100


# ---------------------------------------------------------------- batching


@dataclass
class Batch:
    """Padded, batch-first tensors; built only by `collate`.

    Attributes:
        src_ids: [B, S] source ids ending in EOS.
        src_lengths: [B] real source lengths.
        tgt_in: [B, T] BOS + target (decoder input).
        tgt_out: [B, T] target + EOS (what is predicted), PAD after the end.
    """

    src_ids: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on `device`."""
        return Batch(
            *(t.to(device) for t in (self.src_ids, self.src_lengths, self.tgt_in, self.tgt_out))
        )

    @property
    def num_tokens(self) -> int:
        """Real target tokens (the loss is averaged over these)."""
        return int((self.tgt_out != PAD_ID).sum())


def pad(seqs: list[list[int]], value: int = PAD_ID) -> torch.Tensor:
    """[B, max_len] tensor of the sequences padded with `value`."""
    # one tensor from padded lists: a tensor and a copy per row took 1.5 ms a batch (0.34)
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def collate_sources(src: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids [B, S] with EOS appended and padded, and their lengths [B]."""
    src_ids = [s + [EOS_ID] for s in src]
    return pad(src_ids), torch.tensor([len(s) for s in src_ids])


def collate(src: list[list[int]], tgt: list[list[int]]) -> Batch:
    """Make a `Batch` from source and target id lists (no BOS/EOS yet)."""
    src_ids, src_lengths = collate_sources(src)
    return Batch(
        src_ids=src_ids,
        src_lengths=src_lengths,
        tgt_in=pad([[BOS_ID] + t for t in tgt]),
        tgt_out=pad([t + [EOS_ID] for t in tgt]),
    )


# Training batches hold a multiple of 16 pairs: every product of a decoder step has the
# batch's pair count as rows, and oneDNN makes (and caches) a primitive per row count;
# with any count a bf16 run kept making new ones and its memory kept growing
# (docs/measurements.md, "Memory of a bf16 training run, now").
BATCH_MULTIPLE = 16


def token_batches(
    order: list[int],
    budget: int,
    src_lengths: list[int],
    tgt_lengths: list[int] | None = None,
    multiple: int = 1,
) -> Iterator[list[int]]:
    """Cut `order` (indices sorted by length) into batches by padded size.

    A batch's padded size is its count x (longest source + longest target);
    it stays within `budget`, except that a longer item gets a batch alone.
    A batch of `multiple` items or more holds a multiple of them (the rest
    starts the next batch), except the last. Used for training, translation
    (sources only) and forced scoring.
    """
    start = 0
    while start < len(order):
        end, max_src, max_tgt = start, 0, 0
        while end < len(order):
            i = order[end]
            new_src = max(max_src, src_lengths[i])
            new_tgt = max(max_tgt, tgt_lengths[i]) if tgt_lengths else 0
            if end > start and (end - start + 1) * (new_src + new_tgt) > budget:
                break
            max_src, max_tgt, end = new_src, new_tgt, end + 1
        count = end - start
        if end < len(order) and count >= multiple:
            count -= count % multiple
        yield order[start : start + count]
        start += count


def split_by_length(
    order: list[int], lengths: list[int], parts: int, step_cost: float = 0.0
) -> list[list[int]]:
    """Cut `order` into at most `parts` contiguous runs whose costliest is as cheap as it can be.

    A run costs the sum of its lengths plus `step_cost` times its longest:
    a search takes as many steps as its longest sentence needs, and each
    step has a fixed cost besides the work per sentence.
    """
    if not order:
        return []
    if parts <= 1:
        return [list(order)]
    cheapest = 0.0
    dearest = sum(lengths[i] for i in order) + step_cost * max(lengths[i] for i in order)
    while dearest - cheapest > 1:  # bisect the costliest run's cost, to within a token
        limit = (cheapest + dearest) / 2
        if len(_runs_within(order, lengths, limit, step_cost)) <= parts:
            dearest = limit
        else:
            cheapest = limit
    return _runs_within(order, lengths, dearest, step_cost)


def _runs_within(
    order: list[int], lengths: list[int], limit: float, step_cost: float
) -> list[list[int]]:
    """`order` cut greedily into runs of cost at most `limit` (or of one item)."""
    runs: list[list[int]] = [[]]
    total = longest = 0
    for i in order:
        if runs[-1] and total + lengths[i] + step_cost * max(longest, lengths[i]) > limit:
            runs.append([])
            total = longest = 0
        runs[-1].append(i)
        total, longest = total + lengths[i], max(longest, lengths[i])
    return runs


def make_batches(
    src_lengths: list[int],
    tgt_lengths: list[int],
    batch_tokens: int,
    seed: int,
    epoch: int,
) -> list[list[int]]:
    """Index batches for one epoch, by token budget from length-sorted pairs.

    Pairs are shuffled, sorted by (source, target) length so that neighbours
    pad little, cut into batches of at most `batch_tokens` padded source plus
    target tokens (a multiple of BATCH_MULTIPLE pairs where they hold that
    many), and the batch order is shuffled. The result depends only on
    (seed, epoch), so a resumed run can skip to any batch index.

    Args:
        src_lengths: source length of each pair (EOS included).
        tgt_lengths: target length of each pair (EOS included).
        batch_tokens: token budget per batch; a longer pair gets a batch alone.
        seed: the run's seed.
        epoch: the epoch number.

    Returns:
        Lists of pair indices; every pair appears exactly once.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(src_lengths)))
    rng.shuffle(order)  # random order among pairs of equal length
    order.sort(key=lambda i: (src_lengths[i], tgt_lengths[i]))
    batches = list(token_batches(order, batch_tokens, src_lengths, tgt_lengths, BATCH_MULTIPLE))
    rng.shuffle(batches)
    return batches


def padding_efficiency(
    batches: list[list[int]], src_lengths: list[int], tgt_lengths: list[int]
) -> float:
    """Share of real tokens among all padded tokens of the batches."""
    real = padded = 0
    for batch in batches:
        real += sum(src_lengths[i] + tgt_lengths[i] for i in batch)
        padded += len(batch) * (
            max(src_lengths[i] for i in batch) + max(tgt_lengths[i] for i in batch)
        )
    return real / padded
