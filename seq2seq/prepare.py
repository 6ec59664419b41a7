"""`seq2seq prepare`: corpus -> cleaned splits + SentencePiece model(s) + stats.json.

Everything is written into a temporary folder beside the output and renamed
at the end, so a failed run never leaves a half-prepared corpus.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from seq2seq.data import (
    HUB_SPLITS,
    DataError,
    clean,
    corpus_format,
    drop_reason,
    folder_splits,
    is_held_out,
    read_folder,
    read_hub,
    read_lines,
    read_moses,
    read_tsv,
    unescape_xml,
)
from seq2seq.tokenizer import Tokenizer, train_tokenizer

log = logging.getLogger(__name__)

ENCODE_CHUNK = 10_000  # lines per SentencePiece call when counting tokens


def _split_streams(
    corpus: str, fmt: str, src: str, tgt: str
) -> Iterator[tuple[str, Iterator[tuple[str, str]]]]:
    """(role, pairs) for each split; single-file corpora hold out a hash split."""
    if fmt == "folder":
        for role, split in folder_splits(Path(corpus), src, tgt).items():
            yield role, read_folder(Path(corpus), split, src, tgt)
    elif fmt == "hub":
        for role, split in HUB_SPLITS.items():
            yield role, read_hub(corpus, split, src, tgt)
    elif fmt == "moses":
        yield "all", read_moses(Path(corpus))
    else:
        yield "all", read_tsv(Path(corpus), header=(src.lower(), tgt.lower()))


def prepare_corpus(
    corpus: str | list[str],
    src: str,
    tgt: str,
    out: str | Path,
    vocab_size: int = 8000,
    joint: bool = False,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    max_words: int = 100,
    max_ratio: float = 9.0,
    valid_percent: float = 1.0,
    fmt: str | None = None,
) -> dict:
    """Clean and filter a corpus, train SentencePiece, write `out/`.

    Output: `{train,val,test}.{src,tgt}` (cleaned text), `spm.model` (joint) or
    `spm.{src}.model` and `spm.{tgt}.model`, and `stats.json`. Several corpora
    give one `train` split of all their training pairs, tokenizers trained
    over all of it, and each corpus's own `val.NAME` and `test.NAME` splits
    (NAME from the corpus's file or hub name); stats.json lists them under
    `dev_sets` and counts each corpus under `corpora`.

    Args:
        corpus: local folder, TSV file, Moses phrase table, or hub name; or a
            list of them.
        src: source language code.
        tgt: target language code.
        out: output folder; replaced only when everything succeeded.
        vocab_size: SentencePiece vocabulary size per model.
        joint: one model for both languages.
        model_type: "bpe" or "unigram".
        character_coverage: SentencePiece character coverage.
        max_words: drop pairs with a longer side (in words).
        max_ratio: drop pairs whose longer side has more than this many times
            the words of the shorter side.
        valid_percent: share of a single-file corpus held out as `val`.
        fmt: force the corpus format (folder, tsv, moses, hub).

    Returns:
        The statistics written to stats.json.
    """
    for code in (src, tgt):  # they name the files: train.{src}, spm.{tgt}.model
        if not code or any(c in code for c in "/\\.") or code != "".join(code.split()):
            raise DataError(f"language code {code!r}: give a code such as de or en")
    if src == tgt:
        raise DataError(f"--src and --tgt are the same language ({src}): a pair needs two")
    out = Path(out).resolve()
    corpora = [corpus] if isinstance(corpus, str) else list(corpus)
    for one in corpora:
        check_output_folder(out, one)
    formats = [fmt or corpus_format(one) for one in corpora]
    names = corpus_names(corpora) if len(corpora) > 1 else [""]
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writer = _SplitWriter(tmp, src, tgt, max_words, max_ratio)
        with writer:
            for one, one_fmt, name in zip(corpora, formats, names):
                _write_corpus(writer, one, one_fmt, name, valid_percent)
        splits = writer.totals()
        if not splits.get("train", {}).get("kept"):
            raise DataError(f"{', '.join(corpora)}: no training pairs left after cleaning")
        models = _train_tokenizers(tmp, src, tgt, vocab_size, joint, model_type, character_coverage)
        for split, counts in splits.items():
            for lang in (src, tgt):
                counts[f"tokens_{lang}"] = _count_tokens(tmp / f"{split}.{lang}", models[lang])
        stats = {
            "corpus": corpus,
            "format": formats[0] if isinstance(corpus, str) else formats,
            "src": src,
            "tgt": tgt,
            "splits": splits,
            "tokenizer": {
                "type": model_type,
                "vocab_size": vocab_size,
                "joint": joint,
                "files": {lang: models[lang].name for lang in (src, tgt)},
            },
        }
        if len(corpora) > 1:
            stats["dev_sets"] = [f"val.{name}" for name in names if f"val.{name}" in splits]
            stats["corpora"] = writer.per_corpus
        (tmp / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        _replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def check_output_folder(out: Path, corpus: str) -> None:
    """Refuse an `--out` that would destroy anything `prepare` did not write.

    Allowed: a new folder, an empty one, or a folder an earlier `prepare`
    wrote (its stats.json names every file in it). Never the working folder,
    a folder above it, or the folder that holds the corpus.

    Raises:
        DataError: one line saying why the folder is refused.
    """
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    cwd = Path.cwd().resolve()
    if out == cwd or out in cwd.parents:
        raise DataError(f"--out {out}: is the working folder or one above it; name a new folder")
    source = Path(corpus).resolve()
    if Path(corpus).exists() and (out == source or out in source.parents):
        raise DataError(f"--out {out}: holds the corpus {corpus}; name a new folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _prepared_files(out))
    if foreign:
        raise DataError(
            f"--out {out}: exists and holds files prepare did not write ({foreign[0]}, ...); "
            "name a new folder"
        )


def _prepared_files(folder: Path) -> set[str]:
    """Names of the files an earlier `prepare` wrote into `folder` (empty if none)."""
    try:
        stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
        langs, splits = (stats["src"], stats["tgt"]), stats["splits"]
        files = set(stats["tokenizer"]["files"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {"stats.json", *files, *(f"{split}.{lang}" for split in splits for lang in langs)}


def _replace_folder(new: Path, out: Path) -> None:
    """Move `new` to `out`; an old `out` is moved aside first and removed last,
    so a crash leaves the old or the new folder, never neither."""
    if not out.exists():
        new.rename(out)
        return
    old = out.parent / f".{out.name}.old{os.getpid()}"
    out.rename(old)
    new.rename(out)
    shutil.rmtree(old)


def corpus_names(corpora: list[str]) -> list[str]:
    """A short unique name per corpus for its dev and test splits (val.NAME)."""
    names = []
    for corpus in corpora:
        name = Path(corpus.rstrip("/")).name or corpus
        for suffix in (".gz", ".tsv", ".txt"):
            name = name.removesuffix(suffix)
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "corpus"
        while name in names:
            name += "-2"
        names.append(name)
    return names


class _SplitWriter:
    """Cleans, filters and writes pairs into `{split}.{lang}` files, counting each."""

    def __init__(self, folder: Path, src: str, tgt: str, max_words: int, max_ratio: float):
        self.folder, self.langs = folder, (src, tgt)
        self.max_words, self.max_ratio = max_words, max_ratio
        self.files: dict[str, list] = {}
        self.counts: dict[str, Counter] = {}
        self.per_corpus: dict[str, dict[str, dict]] = {}

    def __enter__(self) -> _SplitWriter:
        return self

    def __exit__(self, *exc) -> None:
        for handles in self.files.values():
            for handle in handles:
                handle.close()

    def write(self, split: str, src_text: str, tgt_text: str) -> None:
        if split not in self.files:
            self.files[split] = [
                (self.folder / f"{split}.{lang}").open("w", encoding="utf-8") for lang in self.langs
            ]
            self.counts[split] = Counter()
        count = self.counts[split]
        count["read"] += 1
        reason = drop_reason(src_text, tgt_text, self.max_words, self.max_ratio)
        if reason:
            count[f"dropped_{reason}"] += 1
            return
        count["kept"] += 1
        self.files[split][0].write(src_text + "\n")
        self.files[split][1].write(tgt_text + "\n")

    def totals(self) -> dict[str, dict]:
        for split, count in self.counts.items():
            dropped = {k: v for k, v in count.items() if k.startswith("dropped_")}
            log.info(
                "%s: kept %d of %d pairs, dropped %s",
                split,
                count["kept"],
                count["read"],
                dropped or "none",
            )
        return {split: dict(count) for split, count in self.counts.items()}


def _write_corpus(
    writer: _SplitWriter, corpus: str, fmt: str, name: str, valid_percent: float
) -> None:
    """Stream one corpus's splits into the writer; `name` tags its dev and test splits."""
    src, tgt = writer.langs
    before = {split: Counter(count) for split, count in writer.counts.items()}
    for role, pairs in _split_streams(corpus, fmt, src, tgt):
        for src_text, tgt_text in tqdm(
            pairs,
            desc=f"prepare {name or corpus} {role}",
            unit=" pairs",
            mininterval=1,
            disable=None,
        ):
            src_text, tgt_text = clean(unescape_xml(src_text)), clean(unescape_xml(tgt_text))
            if role == "all":  # single-file corpus: hold out a stable hash split
                role_here = "val" if is_held_out(src_text, tgt_text, valid_percent) else "train"
            else:
                role_here = role
            split = role_here if role_here == "train" or not name else f"{role_here}.{name}"
            writer.write(split, src_text, tgt_text)
    if name:  # what this corpus added to each split
        writer.per_corpus[name] = {
            "source": corpus,
            "format": fmt,
            "splits": {
                split: dict(count - before.get(split, Counter()))
                for split, count in writer.counts.items()
                if count - before.get(split, Counter())
            },
        }


def _train_tokenizers(
    folder: Path,
    src: str,
    tgt: str,
    vocab_size: int,
    joint: bool,
    model_type: str,
    character_coverage: float,
) -> dict[str, Path]:
    """Train SentencePiece on the train split; returns the model path per language."""
    log.info("training SentencePiece (%s, %d pieces, joint=%s)", model_type, vocab_size, joint)
    if joint:
        path = train_tokenizer(
            [folder / f"train.{src}", folder / f"train.{tgt}"],
            folder / "spm.model",
            vocab_size,
            model_type,
            character_coverage,
        )
        return {src: path, tgt: path}
    return {
        lang: train_tokenizer(
            [folder / f"train.{lang}"],
            folder / f"spm.{lang}.model",
            vocab_size,
            model_type,
            character_coverage,
        )
        for lang in (src, tgt)
    }


def _count_tokens(path: Path, model: Path) -> int:
    """Subword tokens in a text file, encoded in chunks (bounded memory)."""
    tokenizer = Tokenizer.from_file(model)
    total, chunk = 0, []
    for line in read_lines(path):
        chunk.append(line)
        if len(chunk) == ENCODE_CHUNK:
            total += sum(map(len, tokenizer.encode(chunk)))
            chunk = []
    if chunk:
        total += sum(map(len, tokenizer.encode(chunk)))
    return total


def read_stats(folder: str | Path) -> dict:
    """The stats.json of a prepared folder."""
    path = Path(folder) / "stats.json"
    if not path.is_file():
        raise DataError(f"{folder}: not a prepared corpus (no stats.json); run seq2seq prepare")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{path}: damaged (not JSON); run seq2seq prepare again") from None


def load_tokenizers(
    folder: str | Path, src: str = "", tgt: str = ""
) -> tuple[Tokenizer, Tokenizer, dict]:
    """Source and target tokenizers of a prepared folder, and its stats.

    `src` and `tgt` default to the languages the folder was prepared for; the
    folder's pair may also be trained the other way round (each language has
    its tokenizer).

    Raises:
        DataError: not a prepared folder, or it has no tokenizer for a language.
    """
    folder = Path(folder)
    stats = read_stats(folder)
    src, tgt = src or stats["src"], tgt or stats["tgt"]
    files = stats["tokenizer"]["files"]
    if src == tgt or src not in files or tgt not in files:
        raise DataError(
            f"{folder} is prepared for {stats['src']}->{stats['tgt']}, not {src}->{tgt}: "
            "set data.src and data.tgt to its languages (or leave them out), "
            "or prepare a folder for these"
        )
    return Tokenizer.from_file(folder / files[src]), Tokenizer.from_file(folder / files[tgt]), stats
