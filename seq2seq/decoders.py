"""Decoders: the Cho et al. 2014a context decoder and Bahdanau attention.

Both expose `init_state(encoder_output)` and one `step(embedded, state)` that
training (teacher forcing) and search share; `forward` runs the steps over a
whole target. Each returns pre-softmax features of size `maxout_size`; the
model owns the output matrix (so it can be tied to the embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from seq2seq.cells import gru_step
from seq2seq.encoders import EncoderOutput


@dataclass
class DecoderState:
    """Per-sentence decoder state; every tensor has the batch first.

    Attributes:
        hidden: [B, H] the GRU state.
        context: attention: the last context vector c_i, [B, D].
        context_gates: context decoder: C c, the summary's share of the gates, [B, 3H].
        context_out: context decoder: O_c c, its share of the output layer, [B, 2L].
        memory: attention: encoder states [B, S, D].
        keys: attention: U_a memory, [B, S, A], projected once per sentence.
        mask: attention: [B, S] real source positions.
        attention: attention: the last weights [B, S], for plots.
    """

    hidden: Tensor
    context: Tensor | None = None
    context_gates: Tensor | None = None
    context_out: Tensor | None = None
    memory: Tensor | None = None
    keys: Tensor | None = None
    mask: Tensor | None = None
    attention: Tensor | None = None

    def select(self, index: Tensor) -> DecoderState:
        """Rows `index` of every tensor (beam reordering and expansion)."""
        return DecoderState(
            **{
                f.name: None if (v := getattr(self, f.name)) is None else v.index_select(0, index)
                for f in fields(self)
            }
        )


ROW_BLOCK = 128


def linear_rows(layer: nn.Module, x: Tensor) -> Tensor:
    """layer(x) for x [..., m] with many rows (whole sentences at once).

    Under CPU autocast oneDNN caches a matrix-product primitive, with its
    own scratch memory, per shape; every batch brings new row counts, so a
    bf16 run's memory grew for minutes. Rows are padded to a multiple of
    ROW_BLOCK: a few shapes, reused, for a few zero rows.
    """
    if not (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")):
        return layer(x)
    flat = x.flatten(0, -2)
    rows = flat.shape[0]
    out = layer(nn.functional.pad(flat, (0, 0, 0, -rows % ROW_BLOCK)))
    return out[:rows].unflatten(0, x.shape[:-1])


def maxout(x: Tensor) -> Tensor:
    """Max over pairs of neighbouring units: [..., 2L] -> [..., L]."""
    return x.unflatten(-1, (-1, 2)).max(dim=-1).values


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
        self.dropout = nn.Dropout(dropout)

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Initial state and the per-sentence projections of c."""
        c = encoded.summary
        return DecoderState(
            hidden=torch.tanh(self.init_hidden(c)),
            context_gates=self.context_gates(c),
            context_out=self.out_context(c),
        )

    def step(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """embedded [B, E] (previous target word) -> features [B, L], new state."""
        hidden = gru_step(
            self.input(embedded), self.recurrent(state.hidden) + state.context_gates, state.hidden
        )
        features = self.out_hidden(hidden) + self.out_embedded(embedded) + state.context_out
        new_state = DecoderState(
            hidden, context_gates=state.context_gates, context_out=state.context_out
        )
        return self.dropout(maxout(features)), new_state

    def forward(self, embedded: Tensor, state: DecoderState) -> Tensor:
        """Teacher forcing: embedded [B, T, E] -> features [B, T, L].

        W' e and the output projections run once over all steps; only the
        recurrence loops.
        """
        hidden, states = state.hidden, []
        for input_gates in linear_rows(self.input, embedded).unbind(1):  # see cells.run_cell
            hidden = gru_step(input_gates, self.recurrent(hidden) + state.context_gates, hidden)
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
        self.dropout = nn.Dropout(dropout)

    def init_state(self, encoded: EncoderOutput) -> DecoderState:
        """Initial state; attention keys are projected once per sentence."""
        return DecoderState(
            hidden=torch.tanh(self.init_hidden(encoded.summary)),
            context=encoded.states.new_zeros(encoded.states.shape[0], encoded.states.shape[2]),
            memory=encoded.states,
            keys=linear_rows(self.key, encoded.states),
            mask=encoded.mask,
        )

    def attend(self, state: DecoderState) -> tuple[Tensor, Tensor]:
        """Context c_i [B, D] and weights α_i [B, S] from h_{i-1}."""
        energies = self.energy(torch.tanh(state.keys + self.query(state.hidden)[:, None]))
        energies = energies.squeeze(-1).masked_fill(~state.mask, float("-inf"))
        weights = torch.softmax(energies, dim=-1)  # [B, S]
        return torch.bmm(weights[:, None], state.memory).squeeze(1), weights

    def _advance(self, input_gates: Tensor, state: DecoderState) -> DecoderState:
        """Attend with h_{i-1}, then one GRU step: the new state holds h_i and c_i."""
        context, weights = self.attend(state)
        hidden = gru_step(
            input_gates + self.input_context(context), self.recurrent(state.hidden), state.hidden
        )
        return DecoderState(
            hidden,
            context=context,
            memory=state.memory,
            keys=state.keys,
            mask=state.mask,
            attention=weights,
        )

    def _output(
        self, hidden: Tensor, embedded: Tensor, context: Tensor, project=nn.Module.__call__
    ) -> Tensor:
        """s_i; `project(layer, x)` is linear_rows for whole sentences, a plain call per step."""
        features = (
            project(self.out_hidden, hidden)
            + project(self.out_embedded, embedded)
            + project(self.out_context, context)
        )
        return self.dropout(maxout(features))

    def step(self, embedded: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """embedded [B, E] (previous target word) -> features [B, L], new state."""
        state = self._advance(self.input(embedded), state)
        return self._output(state.hidden, embedded, state.context), state

    def forward(self, embedded: Tensor, state: DecoderState) -> Tensor:
        """Teacher forcing: embedded [B, T, E] -> features [B, T, L].

        Only attention and the recurrence loop; the input and output
        projections run once over all steps (larger, faster matrix products).
        """
        hiddens, contexts = [], []
        for input_gates in linear_rows(self.input, embedded).unbind(1):  # see cells.run_cell
            state = self._advance(input_gates, state)
            hiddens.append(state.hidden)
            contexts.append(state.context)
        hiddens, contexts = torch.stack(hiddens, dim=1), torch.stack(contexts, dim=1)
        return self._output(hiddens, embedded, contexts, project=linear_rows)
