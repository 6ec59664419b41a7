"""Recurrent cells and the layer that runs them over time.

Notation as in Cho et al. 2014a: x input (size m), h state (size n), σ the
logistic function, ⊙ elementwise product. Each cell splits its work into
`project` (everything that depends only on the input, one matrix product for
all time steps) and `step` (the recurrent part, run once per time step).

Cells by name:
    gru              Cho et al. 2014a eqs. 5-8, reset gate before U.
    gru_reset_after  torch.nn.GRU / cuDNN form, run fused (`FusedGRU`).
    gru1, gru2, gru3 Dey & Salem 2017 gate variants.
    tanh             simple RNN, h' = tanh(W x + U h + b).
    lstm             comparison baseline (state is [h; c]).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seq2seq.dropout import Dropout, dropout
from seq2seq.onednn import linear_rows
from seq2seq.stepweight import StepWeight

CELL_NAMES = ("gru", "gru_reset_after", "gru1", "gru2", "gru3", "tanh", "lstm")


def tanh_(x: Tensor) -> Tensor:
    """tanh of `x`; on a CPU computed as 2σ(2x) - 1 in float32, in place without autograd.

    torch's float32 CPU tanh calls MKL, which takes a slow generic path on AMD
    CPUs: tanh_ of [24, 5, 15, 256] took 952 µs on an EPYC, this form 157 µs
    (one thread, measured); the two differ by < 2e-7. torch's bf16 tanh is slow
    too: [96, 1, 20, 256] took 263 µs, this form through a float32 copy 130 µs
    (2 threads, measured); rounded to bf16 the results are bf16 tanh's. Under
    autograd `_Tanh` does the same, its backward torch's. A GPU's tanh is one kernel.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.bfloat16):
        return x.tanh_()
    if x.requires_grad:
        return _Tanh.apply(x)
    wide = x if x.dtype == torch.float32 else x.float()
    torch.sigmoid(wide.mul_(2), out=wide).mul_(2).sub_(1)
    return x if wide is x else x.copy_(wide)


class _Tanh(Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        y = tanh_(x.clone() if x.dtype == torch.float32 else x.float()).to(x.dtype)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def gru_step(input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor) -> Tensor:
    """One GRU step in the reset-after form, from precomputed gate inputs.

    r, z = σ(i_rz + g_rz); h̃ = tanh(i_n + r ⊙ g_n); h' = z ⊙ h + (1 - z) ⊙ h̃,
    where i = W x + b (input side) and g = U h (+ C c in the context decoder).

    Args:
        input_gates: [B, 3n], gate order r, z, n.
        hidden_gates: [B, 3n], same order.
        hidden: [B, n].

    Returns:
        The new state [B, n].
    """
    if torch.is_grad_enabled():
        return _GRUStep.apply(input_gates, hidden_gates, hidden)
    n = hidden.shape[-1]
    gates_in, candidate_in = input_gates.split([2 * n, n], dim=-1)
    gates_h, candidate_h = hidden_gates.split([2 * n, n], dim=-1)
    # both gates in one add and one sigmoid; lerp is h̃ + z ⊙ (h - h̃) in one kernel
    reset, update = torch.sigmoid(gates_in + gates_h).chunk(2, -1)
    candidate = tanh_(candidate_in + reset * candidate_h)
    dtype = torch.promote_types(candidate.dtype, hidden.dtype)  # lerp does not promote
    return torch.lerp(candidate.to(dtype), hidden.to(dtype), update.to(dtype))


class _GRUStep(Function):
    """gru_step for training, its backward written out: autograd's ran a node per
    operation and joined the pieces of each split and chunk with a concatenation,
    three a step (~4 ms of a 290 ms bf16 step at hidden 512, profiled); here each
    piece of the gradient is written into its place."""

    @staticmethod
    def forward(ctx, input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor) -> Tensor:
        ctx.dtypes = input_gates.dtype, hidden_gates.dtype, hidden.dtype
        dtype = functools.reduce(torch.promote_types, ctx.dtypes)
        input_gates, hidden_gates, hidden = (
            t.to(dtype) for t in (input_gates, hidden_gates, hidden)
        )
        n = hidden.size(-1)
        gates = torch.sigmoid(input_gates[:, : 2 * n] + hidden_gates[:, : 2 * n])  # [r z]
        reset, update = gates.chunk(2, -1)
        candidate_h = hidden_gates[:, 2 * n :]
        candidate = tanh_(torch.addcmul(input_gates[:, 2 * n :], reset, candidate_h))
        ctx.save_for_backward(gates, candidate_h, candidate, hidden)
        return torch.lerp(candidate, hidden, update)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        gates, candidate_h, candidate, hidden = ctx.saved_tensors
        reset, update = gates.chunk(2, -1)
        n = hidden.size(-1)
        grad_input = grad.new_empty(grad.size(0), 3 * n)  # [r z n], so is grad_recurrent
        grad_recurrent = torch.empty_like(grad_input)
        grad_hidden = grad * update
        grad_candidate = grad_input[:, 2 * n :]  # through tanh
        torch.ops.aten.tanh_backward(grad - grad_hidden, candidate, grad_input=grad_candidate)
        grad_gates = grad_input[:, : 2 * n]  # through σ
        torch.mul(grad_candidate, candidate_h, out=grad_gates[:, :n])
        torch.mul(grad, hidden - candidate, out=grad_gates[:, n:])
        torch.ops.aten.sigmoid_backward(grad_gates, gates, grad_input=grad_gates)
        grad_recurrent[:, : 2 * n] = grad_gates
        torch.mul(grad_candidate, reset, out=grad_recurrent[:, 2 * n :])
        return tuple(g.to(d) for g, d in zip((grad_input, grad_recurrent, grad_hidden), ctx.dtypes))


class GatedCell(nn.Module):
    """GRU of Cho et al. 2014a and the Dey & Salem 2017 variants.

    r = σ(W_r x + U_r h + b_r), z = σ(W_z x + U_z h + b_z)   (gru, eqs. 5-6)
    h̃ = tanh(W x + U (r ⊙ h) + b)                            (eq. 8)
    h' = z ⊙ h + (1 - z) ⊙ h̃                                  (eq. 7)

    The reset gate acts on h before U, as in the paper (torch applies it
    after U). The variants drop terms from the gates only: gru1 σ(U h + b),
    gru2 σ(U h), gru3 σ(b).
    """

    def __init__(self, input_size: int, hidden_size: int, variant: str = "gru") -> None:
        super().__init__()
        n = hidden_size
        self.hidden_size = self.state_size = n
        self.gate_input = variant == "gru"
        gate_recurrent = variant in ("gru", "gru1", "gru2")
        # gate biases live in `input` for gru, in `gate_recurrent` for gru1
        self.input = nn.Linear(input_size, 3 * n if self.gate_input else n)
        self.gate_recurrent = (
            nn.Linear(n, 2 * n, bias=variant == "gru1") if gate_recurrent else None
        )
        self.gate_bias = nn.Parameter(torch.zeros(2 * n)) if variant == "gru3" else None
        self.recurrent = nn.Linear(n, n, bias=False)

    def project(self, x: Tensor) -> Tensor:
        """[..., m] -> [..., 3n] (gru) or [..., n] (variants)."""
        return self.input(x)

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        """One step: [B, k] projected input, [B, n] state -> [B, n]."""
        n = self.hidden_size
        gates = projected[:, : 2 * n] if self.gate_input else 0
        if self.gate_recurrent is not None:
            gates = gates + self.gate_recurrent(state)
        if self.gate_bias is not None:
            gates = gates + self.gate_bias
        reset, update = torch.sigmoid(gates).chunk(2, dim=-1)
        candidate = torch.tanh(projected[:, -n:] + self.recurrent(reset * state))
        return update * state + (1 - update) * candidate

    def output(self, state: Tensor) -> Tensor:
        """The visible state h."""
        return state


class TanhCell(nn.Module):
    """Simple RNN: h' = tanh(W x + U h + b)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = self.state_size = hidden_size
        self.input = nn.Linear(input_size, hidden_size)
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)

    def project(self, x: Tensor) -> Tensor:
        """W x + b."""
        return self.input(x)

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        """h' = tanh(W x + b + U h)."""
        return torch.tanh(projected + self.recurrent(state))

    def output(self, state: Tensor) -> Tensor:
        """The visible state h."""
        return state


class LSTMCell(nn.Module):
    """LSTM baseline; the state is [h; c] so the layer code stays cell-agnostic."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.state_size = 2 * hidden_size
        self.input = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    def project(self, x: Tensor) -> Tensor:
        """W x + b for the four gates i, f, g, o."""
        return self.input(x)

    def step(self, projected: Tensor, state: Tensor) -> Tensor:
        """Standard LSTM step on the packed state [h; c]."""
        h, c = state.chunk(2, dim=-1)
        i, f, g, o = (projected + self.recurrent(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)

    def output(self, state: Tensor) -> Tensor:
        """The visible state h (first half)."""
        return state[:, : self.hidden_size]


def make_cell(name: str, input_size: int, hidden_size: int) -> nn.Module:
    """A cell by its config name (all but gru_reset_after, which is fused)."""
    if name in ("gru", "gru1", "gru2", "gru3"):
        return GatedCell(input_size, hidden_size, name)
    if name == "tanh":
        return TanhCell(input_size, hidden_size)
    if name == "lstm":
        return LSTMCell(input_size, hidden_size)
    raise ValueError(f"unknown cell {name!r}; allowed: {', '.join(CELL_NAMES)}")


def length_mask(lengths: Tensor, size: int) -> Tensor:
    """[B, size] True at the first `lengths[b]` positions of each row: the one padding mask."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def run_cell(cell: nn.Module, x: Tensor, mask: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
    """Run one cell over a padded sequence in one direction.

    A padded position keeps the state unchanged and outputs zeros, so running
    backwards from the padded end starts each sentence at its last real token.

    Args:
        cell: a cell with project / step / output.
        x: [B, T, m] inputs.
        mask: [B, T] True at real positions.
        reverse: run from the last position to the first.

    Returns:
        outputs [B, T, n] and the final visible state [B, n].
    """
    batch, steps, _ = x.shape
    # one product for all steps; unbind, because indexing [:, t] would make
    # backward write a zero-padded [B, T, k] gradient for every step
    projected = cell.project(x).unbind(1)
    state = x.new_zeros(batch, cell.state_size)
    outputs = [None] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        real = mask[:, t, None]
        state = torch.where(real, cell.step(projected[t], state), state)
        outputs[t] = cell.output(state) * real
    return torch.stack(outputs, dim=1), cell.output(state)


class RecurrentLayer(nn.Module):
    """Any cell over time: stacked `layers`, optionally bidirectional.

    Returns per-position outputs of the top layer [B, T, n * dirs] and its
    final states [dirs, B, n] (forward: after the last real token; backward:
    after the first).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        dirs = 2 if bidirectional else 1
        self.cells = nn.ModuleList(
            nn.ModuleList(
                make_cell(cell, input_size if layer == 0 else hidden_size * dirs, hidden_size)
                for _ in range(dirs)
            )
            for layer in range(layers)
        )
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, m], lengths [B] -> outputs [B, T, n*dirs], finals [dirs, B, n]."""
        mask = length_mask(lengths.to(x.device), x.size(1))
        for index, directions in enumerate(self.cells):
            if index > 0:
                x = self.dropout(x)
            results = [run_cell(cell, x, mask, reverse=d == 1) for d, cell in enumerate(directions)]
            x = torch.cat([out for out, _ in results], dim=-1)
        return x, torch.stack([final for _, final in results])


class FusedGRU(nn.Module):
    """gru_reset_after: one torch.nn.GRU call (cuDNN on GPU), packed for padding."""

    def __init__(
        self, input_size: int, hidden_size: int, layers: int, bidirectional: bool, dropout: float
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(
            input_size,
            hidden_size,
            num_layers=layers,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
            batch_first=True,
        )

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, m], lengths [B] -> outputs [B, T, n*dirs], finals [dirs, B, n]."""
        if x.device.type == "cpu" and torch.is_grad_enabled():
            return self._train_on_cpu(x, lengths)
        parameters = dict(self.gru.named_parameters())
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU autocast leaves torch.nn.GRU in float32 (CUDA autocast casts
            # the cuDNN call itself); cast here so the encoder runs in bf16 too
            dtype = torch.get_autocast_dtype("cpu")
            x = x.to(dtype)
            parameters = {name: p.to(dtype) for name, p in parameters.items()}
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, finals = functional_call(self.gru, parameters, (packed,))
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.size(1))
        dirs = 2 if self.gru.bidirectional else 1
        return outputs, finals[-dirs:]  # top layer only

    def _train_on_cpu(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """forward for training on a CPU: torch.nn.GRU's equations, step by step.

        torch.nn.GRU over a PackedSequence adds each step's gradient of U into the
        whole matrix, and for each step's slice of the input gates fills a zero tensor
        of every token's and adds it up (~12 ms of a 290 ms bf16 step at hidden 512,
        an EPYC, profiled). Here U is a StepWeight (one product for its gradient)
        and the input gates are split, not sliced. Under autocast all in its dtype.
        """
        gru, layers = self.gru, []
        for k in range(gru.num_layers):
            directions = []
            for suffix in ["", "_reverse"][: 1 + gru.bidirectional]:
                w_ih, b_ih, w_hh, b_hh = (
                    getattr(gru, f"{name}_l{k}{suffix}")
                    for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
                )
                recurrent = StepWeight(w_hh, b_hh)
                product = functools.partial(F.linear, weight=w_ih, bias=b_ih)
                directions.append((product, recurrent, recurrent.start))
            layers.append(directions)
        return gru_layers(x, lengths, layers, gru.dropout, self.training)


def gru_layers(
    x: Tensor,
    lengths: Tensor,
    layers: list[list[tuple[Callable, Callable, Callable | None]]],
    dropout_p: float = 0.0,
    training: bool = False,
) -> tuple[Tensor, Tensor]:
    """A GRU over a padded batch, run as torch.nn.GRU runs a PackedSequence.

    layers: for each layer, for each direction (forwards, then backwards), its
    input product (x -> W x + b), recurrent product (h -> U h + b_U) and `start`
    (the zero state -> the first state; None: the zeros themselves).
    Returns outputs [B, T, n*dirs] and the top layer's finals [dirs, B, n].
    """
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    rows = packed.batch_sizes.tolist()  # sentences still going at each step, longest first
    data = packed.data  # [tokens, m], step by step
    for k, directions in enumerate(layers):
        if k > 0:
            data = dropout(data, dropout_p, training)
        results = []
        for (input_product, recurrent, start), reverse in zip(directions, (False, True)):
            input_gates = linear_rows(input_product, data).split(rows)
            hidden_size = input_gates[0].size(-1) // 3
            zeros = input_gates[0].new_zeros(rows[-1 if reverse else 0], hidden_size)
            first = zeros if start is None else start(zeros)
            results.append(gru_direction(input_gates, recurrent, first, reverse))
        data = torch.cat([out for out, _ in results], dim=-1)
    return unpack(packed, data, [final for _, final in results], x.size(1))


def gru_direction(
    input_gates: tuple[Tensor, ...],
    recurrent: Callable[[Tensor], Tensor],
    start: Tensor,
    reverse: bool,
) -> tuple[Tensor, Tensor]:
    """One direction of a GRU layer (gru_step) over a PackedSequence's steps.

    input_gates: W x + b at each step, [the sentences still going, 3n], longest first.
    recurrent: h -> U h + b_U. start: the zero state of the first step run: as many
    rows as the first step (forwards) or as the last (backwards, from that step).
    Returns the outputs [tokens, n] in the packed order and the final states [B, n].
    """
    hidden, outputs, ended = start, [None] * len(input_gates), []
    steps = range(len(input_gates))
    for t in reversed(steps) if reverse else steps:
        rows, held = input_gates[t].size(0), hidden.size(0)
        if rows < held:  # forwards: the last sentences have ended
            hidden, gone = hidden.split([rows, held - rows])
            ended.append(gone)
        elif rows > held:  # backwards: more sentences start, from zeros as torch.nn.GRU's
            hidden = torch.cat([hidden, hidden.new_zeros(rows - held, hidden.size(1))])
        hidden = gru_step(input_gates[t], recurrent(hidden), hidden)
        outputs[t] = hidden
    return torch.cat(outputs), torch.cat([hidden, *reversed(ended)])


def unpack(
    packed: PackedSequence, data: Tensor, finals: list[Tensor], steps: int
) -> tuple[Tensor, Tensor]:
    """The top layer's packed outputs `data` and sorted final states `finals` (one a
    direction) of a GRU over `packed` -> outputs [B, steps, n*dirs], finals [dirs, B, n]."""
    outputs = PackedSequence(
        data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices
    )
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=steps)
    return outputs, torch.stack(finals)[:, packed.unsorted_indices]


def make_recurrent_layer(
    cell: str, input_size: int, hidden_size: int, layers: int, bidirectional: bool, dropout: float
) -> nn.Module:
    """The fused path for gru_reset_after, the generic loop for every other cell."""
    if cell == "gru_reset_after":
        return FusedGRU(input_size, hidden_size, layers, bidirectional, dropout)
    return RecurrentLayer(cell, input_size, hidden_size, layers, bidirectional, dropout)
