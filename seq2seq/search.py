"""Greedy and beam search over `Seq2Seq.encode` / `decode_step`.

Both are batched: all sentences (times beams) advance as one batch, the
encoder runs once per sentence, and a sentence leaves the batch as soon as
it is finished. Search knows ids only, never strings.

Given a shortlist's `columns` (the target ids the batch may produce, see
shortlist.py), the output layer and everything over the vocabulary run over
those C columns only, and each column's projections into the decoder are
computed once (`Seq2Seq.step_tables`): words are column numbers inside the
search and become target ids where they leave it (the hypotheses). With
`allowed`, each sentence's log-probabilities are renormalised over its own
columns: its translation is the one it gets alone, whatever its batch holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from seq2seq.model import Seq2Seq
from seq2seq.tokenizer import BOS_ID, EOS_ID


@dataclass
class Hypothesis:
    """One output: token ids (without EOS), total log-prob, ranking score."""

    tokens: list[int]
    log_prob: float
    score: float


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """Length normalisation: a hypothesis' log-prob is divided by length ** alpha."""
    return length**alpha


def block_repeats(log_probs: Tensor, history: Tensor, n: int) -> None:
    """Forbid, in place, every word that would repeat an n-gram of `history`.

    Args:
        log_probs: [R, V] next-word log-probs of R hypotheses.
        history: [R, t] the words so far.
        n: n-gram size; 0 blocks nothing.
    """
    if n <= 0 or history.size(1) < n:
        return
    prefix = history[:, history.size(1) - n + 1 :]  # the last n-1 words, [R, n-1]
    windows = history.unfold(1, n, 1)  # every n-gram so far, [R, t-n+1, n]
    hit = (windows[:, :, :-1] == prefix[:, None]).all(-1)  # same first n-1 words
    rows, cols = hit.nonzero(as_tuple=True)
    log_probs[rows, windows[rows, cols, -1]] = float("-inf")


class Vocabulary:
    """The words a search chooses among: every target id, or a shortlist's columns
    (and, with `allowed` [B, C], each sentence's own among them)."""

    def __init__(self, model: Seq2Seq, columns: Tensor | None, allowed: Tensor | None) -> None:
        self.tables = None if columns is None else model.step_tables(columns)
        self.columns = columns
        self.eos = EOS_ID if columns is None else int(torch.searchsorted(columns, EOS_ID))
        self.bos = BOS_ID if columns is None else len(columns)  # step_tables' last row
        self.blocked = None  # [B, C]: -inf where a sentence may not go, else 0
        if allowed is not None:
            self.blocked = torch.zeros(allowed.shape, device=allowed.device)
            self.blocked.masked_fill_(~allowed, float("-inf"))

    def ids(self, words: Tensor) -> Tensor:
        """Target ids of words (column numbers)."""
        return words if self.columns is None else self.columns[words]

    def own(self, log_probs: Tensor, sentences: Tensor) -> Tensor:
        """log_probs [R, C] of the rows of `sentences` (each sentence's beams together),
        renormalised over each sentence's own columns: what it would get alone (the
        batch's normaliser is a constant of a row, which the renormalisation removes)."""
        if self.blocked is None:
            return log_probs
        rows = log_probs.view(len(sentences), -1, log_probs.size(-1))
        return (rows + self.blocked[sentences, None]).log_softmax(-1).view_as(log_probs)


def max_lengths(src_lengths: Tensor, a: float, b: int) -> Tensor:
    """Maximum output length (EOS included) per sentence: a * source + b."""
    return (src_lengths.float() * a).long() + b


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src_ids: Tensor,
    src_lengths: Tensor,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    no_repeat_ngram: int = 0,
    columns: Tensor | None = None,
    allowed: Tensor | None = None,
) -> list[Hypothesis]:
    """The most probable word at every step, for a batch of sentences.

    Args:
        model: the model, in eval mode.
        src_ids: [B, S] EOS-terminated source ids.
        src_lengths: [B].
        max_len_a: maximum length factor.
        max_len_b: maximum length offset.
        no_repeat_ngram: never repeat an n-gram of this size (0: off).
        columns: a shortlist's sorted target ids [C], EOS among them (None: all).
        allowed: [B, C], the columns each sentence may produce (None: all C).

    Returns:
        One hypothesis per sentence, in input order.
    """
    batch = src_ids.size(0)
    vocabulary = Vocabulary(model, columns, allowed)
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(src_ids.device)
    state = model.init_state(model.encode(src_ids, src_lengths))
    sentences = torch.arange(batch, device=src_ids.device)
    prev = torch.full((batch,), vocabulary.bos, dtype=torch.long, device=src_ids.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src_ids.device)
    log_prob = torch.zeros(batch, device=src_ids.device)
    steps = []
    for t in range(int(limit.max())):
        log_probs, state = model.decode_step(prev, state, vocabulary.tables)  # [B, V]
        log_probs = vocabulary.own(log_probs, sentences)
        if no_repeat_ngram and steps:
            block_repeats(log_probs, torch.stack(steps, dim=1), no_repeat_ngram)
        word = log_probs.argmax(dim=-1)
        word = torch.where(t + 1 >= limit, torch.full_like(word, vocabulary.eos), word)
        word = word.masked_fill(finished, vocabulary.eos)
        gained = log_probs.gather(1, word[:, None]).squeeze(1)
        log_prob += gained.masked_fill(finished, 0.0)
        steps.append(word)
        finished |= word == vocabulary.eos
        prev = word
        if finished.all():
            break
    words = vocabulary.ids(torch.stack(steps, dim=1)).tolist()
    hypotheses = []
    for row in range(batch):
        tokens = words[row][: words[row].index(EOS_ID)] if EOS_ID in words[row] else words[row]
        hypotheses.append(Hypothesis(tokens, float(log_prob[row]), float(log_prob[row])))
    return hypotheses


BLOCK = 64


def top_k(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """x.topk(k, dim=-1) for rows [B, N] of beam x vocabulary scores, 4x faster on CPU.

    The k largest values of a row lie in the k blocks of BLOCK neighbours
    with the largest maxima, so only those k x BLOCK values are sorted.
    """
    rows, n = x.shape
    if n % BLOCK or n < 4 * k * BLOCK:
        return x.topk(k, dim=-1)
    blocks = x.view(rows, -1, BLOCK)
    best = blocks.amax(dim=-1).topk(k, dim=-1).indices  # [B, k]
    candidates = blocks.gather(1, best[:, :, None].expand(-1, -1, BLOCK))  # [B, k, BLOCK]
    values, within = candidates.flatten(1).topk(k, dim=-1)
    return values, best.gather(1, within // BLOCK) * BLOCK + within % BLOCK


def _beam_step(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k over beam x vocabulary.

    Args:
        scores: [B, K, V] total log-probs of every extension.
        k: candidates to keep per sentence (2 x beam, so that enough
            candidates that do not end are left).

    Returns:
        scores [B, k], source beam [B, k], word [B, k].
    """
    vocab = scores.size(-1)
    top_scores, top_index = top_k(scores.flatten(1), k)
    return top_scores, top_index // vocab, top_index % vocab


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src_ids: Tensor,
    src_lengths: Tensor,
    beam: int = 5,
    alpha: float = 1.0,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    nbest: int = 1,
    no_repeat_ngram: int = 0,
    columns: Tensor | None = None,
    allowed: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Beam search for a batch of sentences, all beams as one batch.

    A sentence is finished once `beam` hypotheses have ended (EOS among the
    top `beam` candidates) or it reaches its maximum length; it then leaves
    the batch. Hypotheses are ranked by log-prob / length ** alpha. `columns`
    and `allowed` are a shortlist, as in greedy_search.

    Returns:
        For each sentence, its `nbest` best hypotheses, best first.
    """
    device = src_ids.device
    batch = src_ids.size(0)
    vocabulary = Vocabulary(model, columns, allowed)
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(device)
    state = model.init_state(model.encode(src_ids, src_lengths))
    state = state.reorder(torch.arange(batch, device=device).repeat_interleave(beam))
    active = torch.arange(batch, device=device)  # sentence id of each active row group
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the first step expands one beam only
    history = torch.empty((batch * beam, 0), dtype=torch.long, device=device)  # words
    prev = torch.full((batch * beam,), vocabulary.bos, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    ended_count = torch.zeros(batch, dtype=torch.long, device=device)  # len(finished[i])
    active_list = active.tolist()
    for t in range(int(limit.max())):
        log_probs, state = model.decode_step(prev, state, vocabulary.tables)
        log_probs = vocabulary.own(log_probs, active)
        block_repeats(log_probs, history, no_repeat_ngram)
        log_probs = log_probs.view(len(active), beam, -1)
        at_limit = t + 1 >= limit[active]
        if at_limit.any():  # only EOS is allowed at the maximum length
            eos = vocabulary.eos
            eos_only = torch.full_like(log_probs[0], float("-inf"))
            eos_only[:, eos] = 0.0
            log_probs[at_limit] = eos_only + log_probs[at_limit][..., eos : eos + 1]
        totals = log_probs.add_(scores[:, :, None])  # in place: [R, V] passes dominate a step
        top_scores, top_beam, top_word = _beam_step(totals, 2 * beam)
        ended = (top_word == vocabulary.eos) & torch.isfinite(top_scores)
        ended[:, beam:] = False  # an EOS outside the top `beam` is not taken
        ended_count[active] += ended.sum(dim=1)
        if ended.any():  # read out in bulk: a tensor element at a time costs more than the step
            ended_rows, ended_cols = ended.nonzero(as_tuple=True)
            source_rows = ended_rows * beam + top_beam[ended_rows, ended_cols]
            ended_totals = top_scores[ended_rows, ended_cols].tolist()
            ended_tokens = vocabulary.ids(history[source_rows]).tolist()
            for row, tokens, total in zip(ended_rows.tolist(), ended_tokens, ended_totals):
                penalty = length_penalty(len(tokens) + 1, alpha)
                finished[active_list[row]].append(Hypothesis(tokens, total, total / penalty))
        # continue with the best `beam` candidates that did not end
        keep = torch.argsort((top_word == vocabulary.eos).int(), dim=1, stable=True)[:, :beam]
        scores = top_scores.gather(1, keep)
        rows = (
            torch.arange(len(active), device=device)[:, None] * beam + top_beam.gather(1, keep)
        ).flatten()
        word = top_word.gather(1, keep).flatten()
        history = torch.cat([history[rows], word[:, None]], dim=1)
        prev = word
        state = state.reorder(rows)
        done = ended_count[active] >= beam
        if done.all():
            break
        if done.any():  # finished sentences leave the batch
            left = (~done).nonzero().squeeze(1)
            active, scores = active[left], scores[left]
            active_list = active.tolist()
            rows = (left[:, None] * beam + torch.arange(beam, device=device)).flatten()
            history, prev, state = history[rows], prev[rows], state.keep(left, beam)
    return [sorted(h, key=lambda x: -x.score)[:nbest] for h in finished]


@torch.inference_mode()
def forced_attention(model: Seq2Seq, src_ids: Tensor, tokens: list[int]) -> Tensor:
    """Attention weights [T, S] while the model reads `tokens` + EOS for one sentence.

    Any search's output can be drawn this way: the weights depend only on the
    source and the words before each step.
    """
    lengths = torch.tensor([src_ids.size(1)], device=src_ids.device)
    state = model.init_state(model.encode(src_ids, lengths))
    prev = torch.tensor([BOS_ID], device=src_ids.device)
    weights = []
    for word in [*tokens, EOS_ID]:
        _, state = model.decode_step(prev, state)
        weights.append(state.attention[0].float().cpu())
        prev = torch.tensor([word], device=src_ids.device)
    return torch.stack(weights)
