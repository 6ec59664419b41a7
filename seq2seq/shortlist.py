"""Lexical shortlists: the target pieces a batch of sources may produce.

Marian's shortlist, kept inside the model file: at export an IBM Model 1
table p(e|f) is trained on the parallel text; each source piece keeps its
PER_WORD most likely translations and its own piece (names and numbers are
copied), and the FREQUENT most frequent target pieces are always allowed.
Search then computes the output layer over the union of a batch's allowed
pieces only (about 2,300 of an 8,000-piece vocabulary for batches of ~70
sentences) and renormalises each sentence's scores over its own pieces, so
that a sentence translates the same in any batch (README: what it costs).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from seq2seq.data import clean, pad
from seq2seq.errors import Seq2SeqError
from seq2seq.tokenizer import EOS_ID, UNK_ID, Tokenizer

log = logging.getLogger(__name__)

PER_WORD = 20  # translations kept per source piece (10 cost 0.3 BLEU on Tatoeba)
FREQUENT = 100  # target pieces always allowed
ITERATIONS = 5  # EM iterations of Model 1
MAX_TABLE = 2**28  # entries of the p(e|f) table: 1 GiB in float32, twice that while training
CHUNK = 20_000  # pairs read, sorted by length and padded together
ROWS = 500  # pairs per E-step
COLUMNS_MULTIPLE = 64  # search's top_k works in blocks of 64 columns (search.BLOCK)
KEYS = ("translations", "frequent")  # of the model file's "shortlist" entry


class ShortlistError(Seq2SeqError):
    """A shortlist cannot be built or does not fit the model."""


def padded_batches(
    pairs: Iterable[tuple[str, str]], src: Tokenizer, tgt: Tokenizer
) -> Iterator[tuple[Tensor, Tensor]]:
    """Source and target ids [B, J], [B, I] (-1 after the end), length-sorted within chunks."""
    chunk: list[tuple[str, str]] = []

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        src_ids = src.encode([clean(s) for s, _ in chunk])  # as translation reads its input
        tgt_ids = tgt.encode([clean(t) for _, t in chunk])
        order = sorted(range(len(chunk)), key=lambda i: (len(src_ids[i]), len(tgt_ids[i])))
        for start in range(0, len(order), ROWS):
            rows = [i for i in order[start : start + ROWS] if src_ids[i] and tgt_ids[i]]
            if rows:
                yield (
                    pad([src_ids[i] for i in rows], -1).int(),  # int32: half the memory
                    pad([tgt_ids[i] for i in rows], -1).int(),
                )

    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == CHUNK:
            yield from batches()
            chunk = []
    if chunk:
        yield from batches()


def translation_table(batches: list[tuple[Tensor, Tensor]], src_size: int, tgt_size: int) -> Tensor:
    """IBM Model 1 (Brown et al. 1993) by EM: p(e|f) as a [src_size + 1, tgt_size] table.

    The last row is the empty source word (NULL), which explains target pieces
    that translate nothing; without it function words attach to any source piece.
    """
    rows = src_size + 1
    table = torch.full((rows, tgt_size), 1.0 / tgt_size)
    for iteration in range(ITERATIONS):
        counts = torch.zeros(rows * tgt_size)
        for src_ids, tgt_ids in batches:
            f = torch.cat([torch.full_like(src_ids[:, :1], src_size), src_ids], dim=1).long()
            e = tgt_ids.long()
            f_real, e_real = f >= 0, e >= 0
            f, e = f.clamp(min=0), e.clamp(min=0)
            p = table[f[:, :, None], e[:, None, :]] * f_real[:, :, None]  # [B, J + 1, I]
            # E-step: each target piece's alignment posterior over the source pieces
            posterior = p / p.sum(dim=1, keepdim=True).clamp(min=1e-30) * e_real[:, None, :]
            counts.index_add_(
                0, (f[:, :, None] * tgt_size + e[:, None, :]).flatten(), posterior.flatten()
            )
        counts = counts.view(rows, tgt_size)
        table = counts / counts.sum(dim=1, keepdim=True).clamp(min=1e-30)  # M-step
        log.info("Model 1 iteration %d of %d", iteration + 1, ITERATIONS)
    return table


def build_shortlist(
    pairs: Iterable[tuple[str, str]], src: Tokenizer, tgt: Tokenizer
) -> dict[str, Tensor]:
    """The model file's "shortlist" entry, from raw parallel text.

    Returns:
        translations: [source vocabulary, PER_WORD + 1] target ids per source
            piece: its own piece where the target vocabulary has it, then its
            PER_WORD most likely translations (special pieces map to EOS);
        frequent: [FREQUENT] the most frequent target ids.

    Raises:
        ShortlistError: the table would not fit in memory, or no usable pair.
    """
    if (src.vocab_size + 1) * tgt.vocab_size > MAX_TABLE:
        raise ShortlistError(
            f"vocabularies of {src.vocab_size} and {tgt.vocab_size} pieces need a p(e|f) table "
            f"of over {MAX_TABLE:,} entries; a shortlist is for vocabularies up to about 16,000"
        )
    batches = list(padded_batches(pairs, src, tgt))
    if not batches:
        raise ShortlistError("no pair with text on both sides to train the shortlist on")
    log.info("shortlist: %d pairs", sum(len(s) for s, _ in batches))
    table = translation_table(batches, src.vocab_size, tgt.vocab_size)[:-1]
    table[:, : UNK_ID + 2] = 0  # PAD, UNK, BOS, EOS are no translation of anything
    translations = table.topk(PER_WORD, dim=1).indices
    same = torch.tensor(tgt.piece_ids(src.pieces(list(range(src.vocab_size)))))  # UNK: none
    first = torch.where(same > EOS_ID, same, translations[:, 0])
    translations = torch.cat([first[:, None], translations], dim=1)
    translations[: EOS_ID + 1] = EOS_ID
    counts = torch.zeros(tgt.vocab_size, dtype=torch.long)
    for _, tgt_ids in batches:
        counts += torch.bincount(tgt_ids[tgt_ids >= 0].long(), minlength=tgt.vocab_size)
    frequent = counts.topk(min(FREQUENT, tgt.vocab_size)).indices
    return {"translations": translations.int(), "frequent": frequent.int()}


class Shortlist:
    """The allowed target ids of a batch, from a model file's "shortlist" entry."""

    def __init__(self, stored: dict[str, Tensor], src_size: int, tgt_size: int) -> None:
        translations, frequent = (stored.get(k) if isinstance(stored, dict) else None for k in KEYS)
        if not (
            isinstance(translations, Tensor)
            and isinstance(frequent, Tensor)
            and translations.dim() == 2
            and translations.size(0) == src_size
            and frequent.dim() == 1
            and int(torch.cat([translations.flatten(), frequent]).max()) < tgt_size
        ):
            raise ShortlistError("the shortlist does not fit the model's vocabularies")
        always = torch.tensor([UNK_ID, EOS_ID], dtype=torch.int32)
        self.translations = translations.long()
        self.always = torch.cat([frequent, always]).long()
        self.tgt_size = tgt_size

    def restrict(self, src_ids: Tensor) -> tuple[Tensor, Tensor]:
        """What a batch of sources src_ids [B, S] may produce: the sorted target ids [C]
        of the batch (EOS among them), and [B, C] which of them each source may produce
        itself (search renormalises over those, so that a sentence's translation does
        not depend on the others in its batch).

        C is a multiple of COLUMNS_MULTIPLE where the vocabulary allows: a few
        more pieces are allowed (the lowest ids not yet in), never fewer.
        """
        own = self._own(src_ids)
        union = own.any(0)
        more = (~union).nonzero().squeeze(1)[: -int(union.sum()) % COLUMNS_MULTIPLE]
        union[more] = True
        columns = union.nonzero().squeeze(1)
        return columns.to(src_ids.device), own[:, columns].to(src_ids.device)

    def _own(self, src_ids: Tensor) -> Tensor:
        """[B, V]: the target ids each source may produce (its pieces' translations, the
        frequent pieces, UNK and EOS)."""
        src_ids = src_ids.cpu()
        own = torch.zeros(src_ids.size(0), self.tgt_size, dtype=torch.bool)
        # [B, S x (PER_WORD + 1)]; PAD's row is EOS only (build_shortlist), allowed anyway
        own.scatter_(1, self.translations[src_ids].flatten(1), True)
        own[:, self.always] = True
        return own
