"""Decoders: the Cho et al. 2014a context decoder and Bahdanau attention.

Both expose `init_state(encoder_output)`, `word_inputs(embedded)` (a target
word's share of a step, which search can compute once per word) and one
`step(word_inputs, state)` that teacher forcing and search share; `forward`
runs the steps over a whole target. Each returns pre-softmax features of
size `maxout_size`; the model owns the output matrix (so it can be tied to
the embeddings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seq2seq.cells import gru_step, tanh_
from seq2seq.dropout import Dropout
from seq2seq.encoders import EncoderOutput
from seq2seq.onednn import ROW_BLOCK, PackedLinear, linear_rows
from seq2seq.stepweight import StepMemory, StepWeight


@dataclass
class DecoderState:
    """The decoder state of R hypotheses of B sentences (R = B x beams).

    Per hypothesis, [R, ...], the beams of a sentence adjacent:
        hidden: [R, H] the GRU state.
        attention: attention: the last weights [R, S], for plots.

    Per sentence, [B, ...], shared by its hypotheses, so that beam search
    reorders hypotheses without copying them:
        context_gates: context decoder: C c, the summary's share of the gates, [B, 3H].
        context_out: context decoder: O_c c, its share of the output layer, [B, 2L].
        keys: attention: U_a m, the encoder states projected once, [B, S, A].
        gate_values, out_values: attention: C_a m [B, S, 3H] and O_c m [B, S, 2L]:
            c_i = Σ_j α_ij m_j is linear, so a step mixes projected states instead of
            projecting c_i.
        mask: attention: [B, S] real source positions.
    """

    hidden: Tensor
    attention: Tensor | None = None
    context_gates: Tensor | None = None
    context_out: Tensor | None = None
    keys: Tensor | None = None
    gate_values: Tensor | None = None
    out_values: Tensor | None = None
    mask: Tensor | None = None

    PER_HYPOTHESIS = ("hidden", "attention")

    def reorder(self, rows: Tensor) -> DecoderState:
        """Hypotheses `rows`, each taken from its own sentence (beam expansion and steps)."""
        return self._select(rows, None)

    def keep(self, sentences: Tensor, beams: int) -> DecoderState:
        """Only the sentences `sentences`, with their `beams` hypotheses each."""
        rows = (sentences[:, None] * beams + torch.arange(beams, device=sentences.device)).flatten()
        return self._select(rows, sentences)

    def _select(self, rows: Tensor, sentences: Tensor | None) -> DecoderState:
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            index = rows if f.name in self.PER_HYPOTHESIS else sentences
            picked[f.name] = (
                value if value is None or index is None else value.index_select(0, index)
            )
        return DecoderState(**picked)


def add_per_sentence(per_hypothesis: Tensor, per_sentence: Tensor) -> Tensor:
    """[R, ...] + [B, ...] where R = B x beams, each sentence's beams adjacent."""
    beams = per_hypothesis.size(0) // per_sentence.size(0)
    return (per_hypothesis.unflatten(0, (-1, beams)) + per_sentence[:, None]).flatten(0, 1)


def wide_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit autocast dtypes (softmax and loss need the range), else `dtype`."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def full_precision(x: Tensor) -> Tensor:
    """`x` in its wide_dtype."""
    return x.to(wide_dtype(x.dtype))


def on_positions(rows: Tensor, mask: Tensor) -> Tensor:
    """rows [N, d] of the N true positions of mask [B, S] -> [B, S, d], zeros elsewhere."""
    return rows.new_zeros(*mask.shape, rows.size(-1)).index_put_((mask,), rows)


def maxout(x: Tensor) -> Tensor:
    """Max over pairs of neighbouring units: [..., 2L] -> [..., L]."""
    if torch.is_grad_enabled():  # training: max(dim) keeps the indices its backward needs
        return x.unflatten(-1, (-1, 2)).max(dim=-1).values
    # search: the same values 2-8x faster without indices (measured, 350 x 512)
    return torch.maximum(x[..., 0::2], x[..., 1::2])


class ContextDecoder(nn.Module):
    """Cho et al. 2014a, the RNN Encoder-Decoder (appendix A.1.2).

    h'_0 = tanh(V' c)
    r' = σ(W'_r e(y_{t-1}) + U'_r h' + C_r c)
    z' = σ(W'_z e(y_{t-1}) + U'_z h' + C_z c)
    h̃' = tanh(W' e(y_{t-1}) + r' ⊙ (U' h' + C c))
    h'_t = z' ⊙ h'_{t-1} + (1 - z') ⊙ h̃'
    s_t = maxout(O_h h'_t + O_y e(y_{t-1}) + O_c c)   (pool size 2)
    c is fixed per sentence, so C c and O_c c are computed once per sentence.
    """

    def __init__(
        self, emb_size: int, context_size: int, hidden_size: int, maxout_size: int, dropout: float
    ) -> None:
        super().__init__()
        self.init_hidden = nn.Linear(context_size, hidden_size)  # V'
        self.input = nn.Linear(emb_size, 3 * hidden_size)  # W'_r, W'_z, W'
        self.recurrent = nn.Linear(hidden_size, 3 * hidden_size, bias=False)  # U'
        self.context_gates = nn.Linear(context_size, 3 * hidden_size, bias=False)  # C
        self.out_hidden = nn.Linear(hidden_size, 2 * maxout_size)  # O_h
        self.out_embedded = nn.Linear(emb_size, 2 * maxout_size, bias=False)  # O_y
        self.out_context = nn.Linear(context_size, 2 * maxout_size, bias=False)  # O_c
        self.dropout = Dropout(dropout)

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Initial state and the per-sentence projections of c."""
        c = encoded.summary
        return DecoderState(
            hidden=torch.tanh(self.init_hidden(c)),
            context_gates=self.context_gates(c),
            context_out=self.out_context(c),
        )

    def word_inputs(self, embedded: Tensor) -> Tensor:
        """[..., E] -> [..., 3H + 2L]: the previous word's terms W' e and O_y e."""
        return torch.cat([self.input(embedded), self.out_embedded(embedded)], dim=-1)

    def step(self, word_inputs: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """word_inputs [R, 3H + 2L] (of the previous target word) -> features [R, L], new state."""
        input_gates, embedded_out = word_inputs.tensor_split([3 * state.hidden.size(-1)], dim=-1)
        hidden_gates = add_per_sentence(self.recurrent(state.hidden), state.context_gates)
        hidden = gru_step(input_gates, hidden_gates, state.hidden)
        features = add_per_sentence(self.out_hidden(hidden) + embedded_out, state.context_out)
        return self.dropout(maxout(features)), replace(state, hidden=hidden)

    def forward(self, embedded: Tensor, state: DecoderState) -> Tensor:
        """Teacher forcing: embedded [B, T, E] -> features [B, T, L].

        W' e and the output projections run once over all steps; only the
        recurrence loops (in training, U' as a StepWeight).
        """
        recurrent, hidden = self.recurrent, state.hidden
        if torch.is_grad_enabled():
            recurrent = StepWeight(self.recurrent.weight, None)
            hidden = recurrent.start(hidden)
        states = []
        for input_gates in linear_rows(self.input, embedded).unbind(1):  # see cells.run_cell
            hidden = gru_step(input_gates, recurrent(hidden) + state.context_gates, hidden)
            states.append(hidden)
        hiddens = torch.stack(states, dim=1)  # [B, T, H]
        features = (
            linear_rows(self.out_hidden, hiddens)
            + linear_rows(self.out_embedded, embedded)
            + state.context_out[:, None]
        )
        return self.dropout(maxout(features))


class AttentionDecoder(nn.Module):
    """Bahdanau et al. 2015: additive attention over the encoder states.

    h_0 = tanh(W_s c)
    e_ij = v^T tanh(W_a h_{i-1} + U_a m_j);  α_i = softmax_j(e_i) over real j
    c_i = Σ_j α_ij m_j
    h_i = GRU([e(y_{i-1}); c_i], h_{i-1})
    s_i = maxout(O_h h_i + O_y e(y_{i-1}) + O_c c_i)
    c_i enters only through C_a c_i (the GRU's share) and O_c c_i, computed as
    Σ_j α_ij (C_a m_j) and Σ_j α_ij (O_c m_j) from states projected once per sentence.
    """

    def __init__(
        self,
        emb_size: int,
        memory_size: int,
        summary_size: int,
        hidden_size: int,
        attention_size: int,
        maxout_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.init_hidden = nn.Linear(summary_size, hidden_size)
        self.key = nn.Linear(memory_size, attention_size, bias=False)  # U_a
        self.query = nn.Linear(hidden_size, attention_size)  # W_a
        self.energy = nn.Linear(attention_size, 1, bias=False)  # v
        self.input = nn.Linear(emb_size, 3 * hidden_size)
        self.input_context = nn.Linear(memory_size, 3 * hidden_size, bias=False)
        self.recurrent = nn.Linear(hidden_size, 3 * hidden_size)
        self.out_hidden = nn.Linear(hidden_size, 2 * maxout_size)
        self.out_embedded = nn.Linear(emb_size, 2 * maxout_size, bias=False)
        self.out_context = nn.Linear(memory_size, 2 * maxout_size, bias=False)
        self.dropout = Dropout(dropout)

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Initial state; keys and values are projected once per sentence."""
        memory, mask, search = encoded.states, encoded.mask, not torch.is_grad_enabled()
        # search projects only the real positions where that saves a block of rows: a
        # merged server batch pads its shorter sentences to its longest (half the rows of
        # 24 random sentences, whose initial state took 18.6 ms, now 10.6; measured)
        gather = search and mask.numel() - int(mask.sum()) >= ROW_BLOCK
        if gather:
            memory = memory[mask]
        keys = linear_rows(self.key, memory)
        if search:
            # search: CPU tanh over [B, beams, S, A] runs 3x faster in float32 than in
            # bf16; training stays in bf16, where forward + backward is faster (measured)
            keys = full_precision(keys)
        values = linear_rows(self.input_context, memory), linear_rows(self.out_context, memory)
        if gather:
            keys, *values = (on_positions(x, mask) for x in (keys, *values))
        return DecoderState(
            hidden=torch.tanh(self.init_hidden(encoded.summary)),
            keys=keys,
            gate_values=values[0],
            out_values=values[1],
            mask=mask,
        )

    def attend(self, state: DecoderState, query: Tensor) -> Tensor:
        """The weights α_i [B, beams, S] from the query W_a h_{i-1} [R, A]."""
        query = query.to(state.keys.dtype)
        query = query.unflatten(0, (state.keys.size(0), -1))  # [B, beams, A]
        hidden = tanh_(state.keys[:, None] + query[:, :, None])  # [B, beams, S, A], one buffer
        if isinstance(self.energy, nn.Linear | PackedLinear):
            # in hidden's own dtype: autocast would copy search's float32 [B, beams, S, A] to
            # bf16 for this product (copy + product: 600 -> 420 ms of a ~4 s search,
            # measured); and never packed (packed.py): its B x beams x S rows change at
            # every step, and each new count made oneDNN build a new kernel (0.6 ms)
            with torch.autocast(hidden.device.type, enabled=False):
                energies = F.linear(hidden, self.energy.weight.to(hidden.dtype))
        else:  # a dynamic int8 layer (`export --int8`)
            energies = self.energy(hidden)
        energies = full_precision(energies.squeeze(-1))
        energies = energies.masked_fill(~state.mask[:, None], float("-inf"))
        return torch.softmax(energies, dim=-1)

    def _loop(
        self, state: DecoderState
    ) -> tuple[Callable[[Tensor], tuple[Tensor, Tensor]], Callable[[Tensor], Tensor], DecoderState]:
        """For the teacher-forced loop: h_{i-1} -> (U h_{i-1} + b_U, W_a h_{i-1} + b_a),
        α_i -> Σ_j α_ij C_a m_j (only the GRU's share of the values: O_c c_i is not fed
        back, so it waits for all steps' weights), and the state to start from.
        Training multiplies by [U; W_a] as one StepWeight and mixes as a StepMemory."""
        if not torch.is_grad_enabled():
            return (
                lambda hidden: (self.recurrent(hidden), self.query(hidden)),
                lambda weights: torch.bmm(weights, state.gate_values),
                state,
            )
        layer = StepWeight(
            torch.cat([self.recurrent.weight, self.query.weight]),
            torch.cat([self.recurrent.bias, self.query.bias]),
        )
        mix = StepMemory(state.gate_values)
        sizes = [self.recurrent.weight.size(0), self.query.weight.size(0)]
        state = replace(state, hidden=mix.start(layer.start(state.hidden)))
        return lambda hidden: layer(hidden).split(sizes, -1), mix, state

    def word_inputs(self, embedded: Tensor) -> Tensor:
        """[..., E] -> [..., 3H + 2L]: the previous word's terms W e (the GRU's) and O_y e."""
        return torch.cat([self.input(embedded), self.out_embedded(embedded)], dim=-1)

    def step(self, word_inputs: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """word_inputs [R, 3H + 2L] (of the previous target word) -> features [R, L], new state."""
        input_gates, embedded_out = word_inputs.tensor_split([3 * state.hidden.size(-1)], dim=-1)
        weights = self.attend(state, self.query(state.hidden))  # [B, beams, S]
        context_gates = torch.bmm(weights, state.gate_values).flatten(0, 1)
        hidden = gru_step(input_gates + context_gates, self.recurrent(state.hidden), state.hidden)
        context_out = torch.bmm(weights, state.out_values).flatten(0, 1)
        features = self.out_hidden(hidden) + embedded_out + context_out
        state = replace(state, hidden=hidden, attention=weights.flatten(0, 1))
        return self.dropout(maxout(features)), state

    def forward(self, embedded: Tensor, state: DecoderState) -> Tensor:
        """Teacher forcing: embedded [B, T, E] -> features [B, T, L].

        Only attention and the recurrence loop; the input and output
        projections run once over all steps (larger, faster matrix products),
        and in training U and W_a are one StepWeight, the values a StepMemory.
        """
        hidden_products, mix, state = self._loop(state)
        hidden, hiddens, weights = state.hidden, [], []
        for input_gates in linear_rows(self.input, embedded).unbind(1):  # see cells.run_cell
            hidden_gates, query = hidden_products(hidden)
            weights.append(self.attend(state, query))  # [B, 1, S]
            hidden = gru_step(input_gates + mix(weights[-1]).flatten(0, 1), hidden_gates, hidden)
            hiddens.append(hidden)
        weights = torch.cat(weights, dim=1).to(state.out_values.dtype)  # [B, T, S]
        features = (
            linear_rows(self.out_hidden, torch.stack(hiddens, dim=1))
            + linear_rows(self.out_embedded, embedded)
            + torch.bmm(weights, state.out_values)  # O_c c_i, all steps at once
        )
        return self.dropout(maxout(features))
