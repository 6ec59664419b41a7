"""Text in, text out: a loaded model file plus search, batched by tokens.

Lines are read in chunks, sorted by length within a chunk, batched by a
token budget, searched, and written back in input order, so a file of any
size is translated in bounded memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from sentencex import segment
from torch.ao.quantization import quantize_dynamic

from seq2seq.checkpoint import CheckpointError, dequantize_matrices, load_file
from seq2seq.config import Config, ConfigError, config_from_dict
from seq2seq.data import clean, collate, collate_sources, split_by_length, token_batches
from seq2seq.model import Ensemble, Seq2Seq, build_model
from seq2seq.onednn import can_pack
from seq2seq.packed import pack_linear_layers
from seq2seq.search import Hypothesis, beam_search, greedy_search
from seq2seq.shortlist import Shortlist, ShortlistError
from seq2seq.tokenizer import UNK_ID, Tokenizer
from seq2seq.unseen import Source, Typed, fit

log = logging.getLogger(__name__)

MAX_SRC_TOKENS = 250  # longer inputs are cut (the models train on <= 100 words)
MAX_SRC_CHARS = 16 * MAX_SRC_TOKENS  # cut before tokenizing: more than 250 tokens' worth
CHUNK_LINES = 2000  # lines sorted and batched together
# a search step's fixed cost, in sentence tokens' worth: a share of long sentences takes
# more steps, so it gets fewer tokens (48 sentences, beam 5 or 1, 2 threads: the two
# shares' searches left 7.4 % of the cores idle with 0, 2 % with 6; larger inputs,
# many batches a share, within 1-2 % either way; measured)
STEP_COST = 6.0
# sentences of a thread's share at least: smaller shares search slower side by side than
# together (bf16 beam 5, 2 cores: 3 sentences 0.63x the speed, 12 even, 48 1.5x; measured)
MIN_SHARE = 8
PIECE_COUNTS_KEPT = 200_000  # words whose piece counts are remembered (~30 MB)


@dataclass
class Translation:
    """The n-best outputs for one input line, best first."""

    texts: list[str]
    scores: list[float]
    tokens: list[int] = field(default_factory=list)  # of the best output


class Translator:
    """A model with its tokenizers and search settings."""

    def __init__(
        self,
        model: Seq2Seq | Ensemble,
        src: Tokenizer,
        tgt: Tokenizer,
        config: Config,
        device: str,
        dtype: str = "fp32",
        shortlist: Shortlist | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.src, self.tgt, self.config, self.device = src, tgt, config, device
        self.dtype = dtype  # "bf16": search and scoring under bf16 autocast
        self.shortlist = shortlist  # search only; scoring always uses the whole vocabulary
        self._piece_counts: dict[str, int] = {}  # source pieces a word takes (unseen.fit asks)

    def precision(self) -> contextlib.AbstractContextManager:
        """The autocast context of `dtype` (a no-op for fp32)."""
        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu", dtype: str = "fp32") -> Translator:
        """Load a model file (or training checkpoint); weights become float32 (bf16 for bf16),
        packed once for oneDNN on a CPU where that is faster (`packed.py`).

        An int8 file (`export --int8`) runs its Linear layers as dynamic int8;
        a file with a shortlist (`export --shortlist`) searches with it.
        """
        payload = load_file(path)
        if payload.get("int8") and dtype != "fp32":
            raise ConfigError(f"{path}: an int8 model file runs in int8; leave out --dtype {dtype}")
        try:
            config = config_from_dict(payload["config"])
        except ConfigError as error:
            raise CheckpointError(f"{path}: its config is not valid ({error})") from None
        try:
            src = Tokenizer(payload["tokenizers"]["src"])
            tgt = Tokenizer(payload["tokenizers"]["tgt"])
        except RuntimeError:
            raise CheckpointError(f"{path}: its tokenizers cannot be read") from None
        model = build_model(config.model, src.vocab_size, tgt.vocab_size)
        state = payload["state_dict"]
        if payload.get("int8"):
            state = dequantize_matrices(state)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[-1].strip()[:200]
            raise CheckpointError(
                f"{path}: its weights do not match its config ({first})"
            ) from None
        if payload.get("int8"):
            with warnings.catch_warnings():  # torch.ao's notice that torchao is its successor
                warnings.simplefilter("ignore")
                model = quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
        if dtype == "bf16":
            # Under inference mode autocast casts every fp32 weight again at every call
            # (a third of a beam-search step); weights stored in bf16 are cast once.
            model = model.to(torch.bfloat16)
        weights = torch.bfloat16 if dtype == "bf16" else torch.float32
        if torch.device(device).type == "cpu" and can_pack(weights):
            pack_linear_layers(model)
        shortlist = None
        if "shortlist" in payload:
            try:
                shortlist = Shortlist(payload["shortlist"], src.vocab_size, tgt.vocab_size)
            except ShortlistError as error:
                raise CheckpointError(f"{path}: damaged model file ({error})") from None
        return cls(model, src, tgt, config, device, dtype, shortlist)

    @classmethod
    def from_files(
        cls, paths: list[str | Path], device: str = "cpu", dtype: str = "fp32"
    ) -> Translator:
        """One model file, or an ensemble of several that share their tokenizers.

        The ensemble searches with the first file's search settings and shortlist.

        Raises:
            CheckpointError: the files' tokenizers differ.
        """
        translators = [cls.from_file(path, device, dtype) for path in paths]
        first = translators[0]
        if len(translators) == 1:
            return first
        for path, other in zip(paths[1:], translators[1:]):
            for side in ("src", "tgt"):
                if getattr(other, side).model_bytes != getattr(first, side).model_bytes:
                    raise CheckpointError(
                        f"{path}: its {side} vocabulary differs from {paths[0]}'s; an ensemble "
                        "needs models trained on the same prepared corpus"
                    )
        ensemble = Ensemble([t.model for t in translators])
        return cls(ensemble, first.src, first.tgt, first.config, device, dtype, first.shortlist)

    def encode_sources(self, texts: list[str]) -> list[list[int]]:
        """Clean and tokenize; over-long inputs are cut with a warning.

        A line is cut to `MAX_SRC_CHARS` characters before SentencePiece sees
        it, so the cost of a huge line is that of the part the model reads.
        """
        ids = self.src.encode([clean(t[:MAX_SRC_CHARS]) for t in texts])
        for row, seq in enumerate(ids):
            if len(seq) > MAX_SRC_TOKENS or len(texts[row]) > MAX_SRC_CHARS:
                log.warning(
                    "input of %d characters cut to its first %d tokens",
                    len(texts[row]),
                    min(len(seq), MAX_SRC_TOKENS),
                )
                ids[row] = seq[:MAX_SRC_TOKENS]
        return ids

    def translate(
        self,
        texts: list[str],
        beam: int | None = None,
        nbest: int = 1,
        batch_tokens: int | None = None,
    ) -> list[Translation]:
        """Translate a list of texts; an empty text gives an empty translation.

        A text is cleaned (data.clean: invisible characters dropped), made like
        the training text for the search and its translation made like the text
        again (unseen.py): unknown symbols, addresses and emoticons set aside, a
        missing final stop, case, German's spelled-out letters; numbers the model
        wrote otherwise copied, XML escapes it learnt undone; a text without a
        letter is kept as it is.
        """
        search = self.config.search
        beam = beam or search.beam
        batch_tokens = batch_tokens or search.batch_tokens
        source = Source(self.config.data.src, self._has_piece, self._pieces, self._cased)
        fitted = [fit(clean(text), source) for text in texts]
        ids = self.encode_sources([words for words, _ in fitted])
        results: list[Translation | None] = [None] * len(texts)
        todo = [i for i, seq in enumerate(ids) if seq]
        for i in set(range(len(texts))) - set(todo):
            results[i] = Translation([""] * nbest, [0.0] * nbest)
        todo.sort(key=lambda i: len(ids[i]))
        groups = self._batches(todo, batch_tokens // beam, [len(s) + 1 for s in ids])

        def search(group: list[int]) -> list[list[Hypothesis]]:
            src_ids, src_lengths = collate_sources([ids[i] for i in group])
            # every finished hypothesis, so that n-best entries that read the same can go
            with self.precision():
                return self._search(
                    src_ids.to(self.device),
                    src_lengths.to(self.device),
                    beam,
                    1 if nbest == 1 else 2 * beam,
                )

        for group, hyps_per_sentence in zip(groups, self._map(search, groups)):
            for i, hyps in zip(group, hyps_per_sentence):
                texts_out = self.tgt.decode([h.tokens for h in hyps])
                first = list(dict.fromkeys(texts_out))[:nbest]  # distinct texts, best first
                scores = [hyps[texts_out.index(text)].score for text in first]
                results[i] = Translation(first, scores, hyps[0].tokens)
        return [_as_typed(result, typed) for result, (_, typed) in zip(results, fitted)]

    @functools.cached_property
    def _cased(self) -> bool:
        """Whether the source vocabulary has capitals (its training text was not lowered)."""
        pieces = self.src.pieces(list(range(self.src.vocab_size)))
        return any(p != p.lower() and not (p[0] == "<" and p[-1] == ">") for p in pieces)  # <0xC3>

    def _has_piece(self, char: str) -> bool:
        """Whether the source vocabulary spells `char` with a piece (not as bytes)."""
        return self.src.piece_ids([char, "▁" + char]) != [UNK_ID, UNK_ID]

    def _pieces(self, words: list[str]) -> list[int]:
        """How many source pieces each word takes (remembered: a text's words recur)."""
        new = [word for word in dict.fromkeys(words) if word not in self._piece_counts]
        if new:
            if len(self._piece_counts) > PIECE_COUNTS_KEPT:
                self._piece_counts.clear()
            self._piece_counts.update(zip(new, map(len, self.src.encode(new))))
        return [self._piece_counts[word] for word in words]

    def _batches(
        self,
        order: list[int],
        budget: int,
        src_lengths: list[int],
        tgt_lengths: list[int] | None = None,
    ) -> list[list[int]]:
        """`order` (sorted by length) in batches by padded size; on a CPU, in a
        share of about equal cost for each thread (searched side by side)."""
        lengths = src_lengths
        if tgt_lengths is not None:
            lengths = [s + t for s, t in zip(src_lengths, tgt_lengths)]
        parts = min(torch.get_num_threads(), len(order) // MIN_SHARE) if self.device == "cpu" else 1
        return [
            batch
            for share in split_by_length(order, lengths, parts, STEP_COST)
            for batch in token_batches(share, budget, src_lengths, tgt_lengths)
        ]

    def _map(self, function: Callable, batches: list[list[int]]) -> Iterable:
        """`function` over the batches: side by side on a CPU (`in_parallel`)."""
        return in_parallel(function, batches) if self.device == "cpu" else map(function, batches)

    def _search(
        self, src_ids: torch.Tensor, src_lengths: torch.Tensor, beam: int, nbest: int
    ) -> list[list[Hypothesis]]:
        search = self.config.search
        columns, allowed = self.shortlist.restrict(src_ids) if self.shortlist else (None, None)
        settings = {
            "max_len_a": search.max_len_a,
            "max_len_b": search.max_len_b,
            "no_repeat_ngram": search.no_repeat_ngram,
            "columns": columns,
            "allowed": allowed,
        }
        if beam == 1:  # greedy has one hypothesis
            return [[h] for h in greedy_search(self.model, src_ids, src_lengths, **settings)]
        return beam_search(
            self.model, src_ids, src_lengths, beam=beam, alpha=search.alpha, nbest=nbest, **settings
        )

    def score_ids(
        self, src_ids: list[list[int]], tgt_ids: list[list[int]], batch_tokens: int
    ) -> list[float]:
        """log p(tgt | src) of each pair by forced decoding, in input order.

        The one scoring path: dev loss, `score-phrases` and sentence-pair
        scoring all use it. Pairs are sorted by length and batched by tokens
        (on a CPU, batches are scored side by side: 1,000 test_2016 pairs at
        1,500 tokens a batch, 2 cores: 1.25x as fast, measured).
        """
        order = sorted(range(len(src_ids)), key=lambda i: (len(src_ids[i]), len(tgt_ids[i])))
        src_lengths = [len(s) + 1 for s in src_ids]  # EOS included
        tgt_lengths = [len(t) + 1 for t in tgt_ids]
        batches = self._batches(order, batch_tokens, src_lengths, tgt_lengths)

        @torch.inference_mode()  # per thread: the workers need it too
        def score(group: list[int]) -> list[float]:
            batch = collate([src_ids[i] for i in group], [tgt_ids[i] for i in group])
            batch = batch.to(self.device)
            with self.precision():
                total, _ = self.model.score(batch.src_ids, batch.src_lengths, batch.tgt_out)
            return total.tolist()

        log_probs = [0.0] * len(src_ids)
        for group, values in zip(batches, self._map(score, batches)):
            for i, value in zip(group, values):
                log_probs[i] = value
        return log_probs

    def translate_lines(
        self,
        lines: list[str],
        beam: int | None = None,
        nbest: int = 1,
        batch_tokens: int | None = None,
    ) -> list[Translation]:
        """Translate lines that may hold several sentences each (a pasted paragraph).

        Each line is split into sentences, all sentences are translated
        together, and each line's translations are joined with a space: one
        output line per input line, its leading and trailing whitespace kept.
        A text of several lines (a server's text area) keeps its line breaks.
        The k-th of the n best of a line joins the k-th best of each of its
        sentences (or the best, for a sentence with fewer).
        """
        rows = [row for text in lines for row in text.split("\n")]
        sentences, owners = [], []
        for index, row in enumerate(rows):
            for sentence in split_sentences(row, self.config.data.src):
                sentences.append(sentence)
                owners.append(index)
        translated = self.translate(sentences, beam, nbest, batch_tokens)
        parts: list[list[Translation]] = [[] for _ in rows]
        for index, result in zip(owners, translated):
            parts[index].append(result)
        done = iter([_join(row, row_parts) for row, row_parts in zip(rows, parts)])
        return [_combine([next(done) for _ in text.split("\n")], "\n") for text in lines]

    def translate_stream(
        self,
        lines: Iterable[str],
        beam: int | None = None,
        nbest: int = 1,
        batch_tokens: int | None = None,
        split: bool = True,
        chunk_lines: int = CHUNK_LINES,
    ) -> Iterator[Translation]:
        """Translations of `lines` in order, `chunk_lines` lines searched together
        (1: each line as soon as it is read, for a person or a program waiting for it).

        With `split`, a line may hold several sentences (`translate_lines`).
        """
        translate = self.translate_lines if split else self.translate
        chunk, unreleased = [], 0
        for line in lines:
            chunk.append(line)
            if len(chunk) == chunk_lines:
                yield from translate(chunk, beam, nbest, batch_tokens)
                unreleased, chunk = unreleased + len(chunk), []
                if unreleased >= CHUNK_LINES:  # a trim takes milliseconds: not every line
                    # 195,438 lines (greedy, the default model): RSS 1.1 -> 2.1 GB without,
                    # 0.7-1.4 GB with no trend with this (measured), in the same time
                    release_free_memory()
                    unreleased = 0
        if chunk:
            yield from translate(chunk, beam, nbest, batch_tokens)


def in_parallel(function: Callable, items: list) -> Iterable:
    """`map(function, items)`; with several CPU threads and several items, the
    items run side by side in worker threads that share the intra-op threads.

    A search step is ~60 small operations, and one split over two threads pays
    a fork and a join for each; two searches side by side, one thread each,
    finish sooner (1,000 sentences, beam 5, 2 cores: bf16 0.65x the time, fp32
    0.90x, measured).
    """
    threads = torch.get_num_threads()
    workers = min(threads, len(items))
    if workers < 2:
        return map(function, items)
    torch.set_num_threads(threads // workers)  # process-wide: the workers share it
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(function, items))
    finally:
        torch.set_num_threads(threads)


def release_free_memory() -> None:
    """Return the C library's freed heap memory to the system (glibc's malloc_trim).

    Searches of ever-changing sizes leave glibc's heap fragmented, and it keeps
    what they free: without this a bf16 server's RSS grew 31 % over 400 searches
    of 1-48 sentences, with it (every 5 or 20 searches) 12-13 % (oneDNN's
    primitive cache filling), as with jemalloc, and no slower (measured). A
    no-op where the C library has no malloc_trim (musl, macOS).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (AttributeError, OSError, TypeError):
        return None


def _as_typed(result: Translation, typed: Typed) -> Translation:
    """The translation of a text made like the training text (unseen.py), made like the
    text as typed; texts that now read the same are merged."""
    return _merged([typed.restore(text) for text in result.texts], result.scores, result.tokens)


def _join(line: str, parts: list[Translation]) -> Translation:
    """One line's translation from its sentences' translations; whitespace kept."""
    if not parts:
        return Translation([""], [0.0])
    lead, trail = line[: len(line) - len(line.lstrip())], line[len(line.rstrip()) :]
    joined = _combine(parts, " ")
    texts = [lead + text + trail for text in joined.texts]
    return Translation(texts, joined.scores, joined.tokens)


def _combine(parts: list[Translation], separator: str) -> Translation:
    """The parts' translations joined: the k-th joins the k-th best of each part (or
    its last); texts that read the same are merged."""
    texts, scores = [], []
    for k in range(max(len(p.texts) for p in parts)):
        chosen = [min(k, len(p.texts) - 1) for p in parts]
        texts.append(separator.join(p.texts[j] for p, j in zip(parts, chosen)))
        scores.append(sum(p.scores[j] for p, j in zip(parts, chosen)))
    return _merged(texts, scores, [t for p in parts for t in p.tokens])


def _merged(texts: list[str], scores: list[float], tokens: list[int]) -> Translation:
    """A Translation of `texts`, best first, those that read as an earlier one left out."""
    distinct = list(dict.fromkeys(texts))
    return Translation(distinct, [scores[texts.index(text)] for text in distinct], tokens)


def split_sentences(text: str, lang: str) -> list[str]:
    """The sentences of `text` (sentencex's rules for `lang`, with fallbacks for
    languages it lacks), without the whitespace between them."""
    return [sentence.strip() for sentence in segment(lang, text) if sentence.strip()]
