import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.testing import assert_close

from seq2seq.cells import (
    FusedGRU,
    GatedCell,
    LSTMCell,
    RecurrentLayer,
    TanhCell,
    gru_step,
    make_cell,
    tanh_,
)

pytestmark = pytest.mark.usefixtures("float64")


def sigmoid(x):
    return 1 / (1 + torch.exp(-x))


def reference_step(name, cell, x, h):
    """The equations written out by hand from the cell's weight matrices."""
    n = cell.hidden_size
    if name == "tanh":
        return torch.tanh(cell.input.weight @ x + cell.input.bias + cell.recurrent.weight @ h)
    U = cell.recurrent.weight
    if name == "gru":
        W, b = cell.input.weight, cell.input.bias
        Ug = cell.gate_recurrent.weight
        r = sigmoid(W[:n] @ x + Ug[:n] @ h + b[:n])
        z = sigmoid(W[n : 2 * n] @ x + Ug[n:] @ h + b[n : 2 * n])
        cand = torch.tanh(W[2 * n :] @ x + U @ (r * h) + b[2 * n :])
    else:
        if name == "gru1":
            g = cell.gate_recurrent.weight @ h + cell.gate_recurrent.bias
        elif name == "gru2":
            g = cell.gate_recurrent.weight @ h
        else:
            g = cell.gate_bias
        r, z = sigmoid(g[:n]), sigmoid(g[n:])
        cand = torch.tanh(cell.input.weight @ x + cell.input.bias + U @ (r * h))
    return z * h + (1 - z) * cand


@pytest.mark.parametrize("name", ["gru", "gru1", "gru2", "gru3", "tanh"])
def test_cell_matches_hand_written_equations(name):
    torch.manual_seed(1)
    cell = make_cell(name, 3, 2)
    with torch.no_grad():
        for p in cell.parameters():
            p.uniform_(-1, 1)
    x, h = torch.randn(3), torch.randn(2)
    got = cell.step(cell.project(x[None]), h[None])[0]
    assert_close(got, reference_step(name, cell, x, h))


def test_gru_two_unit_step_by_hand():
    """One 2-unit step with round numbers, computed on paper."""
    cell = GatedCell(1, 2, "gru")
    with torch.no_grad():
        cell.input.weight.copy_(torch.tensor([[1.0], [0.0], [0.0], [0.0], [2.0], [0.0]]))
        cell.input.bias.zero_()
        cell.gate_recurrent.weight.zero_()
        cell.recurrent.weight.copy_(torch.eye(2))
    x, h = torch.tensor([[0.0]]), torch.tensor([[1.0, -1.0]])
    # r = z = σ(0) = 0.5; h̃ = tanh(0 + r*h) = tanh(±0.5); h' = 0.5 h + 0.5 h̃
    expected = 0.5 * h + 0.5 * torch.tanh(0.5 * h)
    assert_close(cell.step(cell.project(x), h), expected)


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "name, formula",
    [
        ("gru", lambda n, m: 3 * (n * n + n * m + n)),
        ("gru1", lambda n, m: 3 * (n * n + n * m + n) - 2 * n * m),
        ("gru2", lambda n, m: 3 * (n * n + n * m + n) - 2 * n * m - 2 * n),
        ("gru3", lambda n, m: 3 * (n * n + n * m + n) - 2 * n * m - 2 * n * n),
        ("tanh", lambda n, m: n * n + n * m + n),
        ("lstm", lambda n, m: 4 * (n * n + n * m + n)),
    ],
)
def test_parameter_counts(name, formula):
    n, m = 7, 5
    assert count(make_cell(name, m, n)) == formula(n, m)
    layer = RecurrentLayer(name, m, n, layers=2, bidirectional=True, dropout=0.0)
    assert count(layer) == 2 * formula(n, m) + 2 * formula(n, 2 * n)


def copy_gru_weights(layer: RecurrentLayer, fused: FusedGRU) -> None:
    """Copy torch.nn.GRU weights (gate order r, z, n) into reset-after loop cells."""
    for index, directions in enumerate(layer.cells):
        for d, cell in enumerate(directions):
            suffix = f"_l{index}" + ("_reverse" if d else "")
            cell.input.weight.data.copy_(getattr(fused.gru, "weight_ih" + suffix))
            cell.input.bias.data.copy_(getattr(fused.gru, "bias_ih" + suffix))
            cell.recurrent.weight.data.copy_(getattr(fused.gru, "weight_hh" + suffix))
            cell.recurrent.bias.data.copy_(getattr(fused.gru, "bias_hh" + suffix))


class ResetAfterCell(torch.nn.Module):
    """torch's GRU equations in the project's cell protocol, for comparison."""

    def __init__(self, m, n):
        super().__init__()
        self.hidden_size = self.state_size = n
        self.input = torch.nn.Linear(m, 3 * n)
        self.recurrent = torch.nn.Linear(n, 3 * n)

    def project(self, x):
        return self.input(x)

    def step(self, projected, h):
        from seq2seq.cells import gru_step

        return gru_step(projected, self.recurrent(h), h)

    def output(self, state):
        return state


@pytest.mark.parametrize("bidirectional", [False, True])
def test_fused_gru_equals_step_by_step_loop_on_padded_batch(bidirectional, monkeypatch):
    torch.manual_seed(0)
    m, n, layers = 4, 3, 2
    fused = FusedGRU(m, n, layers, bidirectional, dropout=0.0)
    monkeypatch.setattr("seq2seq.cells.make_cell", lambda name, i, h: ResetAfterCell(i, h))
    loop = RecurrentLayer("gru", m, n, layers, bidirectional, dropout=0.0)
    copy_gru_weights(loop, fused)
    x, lengths = torch.randn(3, 5, m), torch.tensor([5, 2, 4])
    out_f, fin_f = fused(x, lengths)
    out_l, fin_l = loop(x, lengths)
    assert_close(out_f, out_l)
    assert_close(fin_f, fin_l)
    # and against torch.nn.GRU run on each sentence alone, unpadded
    for row, length in enumerate(lengths.tolist()):
        alone, _ = fused.gru(x[row : row + 1, :length])
        assert_close(out_f[row, :length], alone[0])


def test_gru_step_trains_with_the_gradients_of_its_equations():
    """gru_step's written-out backward (training) against autograd over the equations."""
    torch.manual_seed(0)
    n = 4
    inputs = [torch.randn(3, k, dtype=torch.float64, requires_grad=True) for k in (3 * n, 3 * n, n)]

    def equations(i, g, h):
        r = torch.sigmoid(i[:, :n] + g[:, :n])
        z = torch.sigmoid(i[:, n : 2 * n] + g[:, n : 2 * n])
        candidate = torch.tanh(i[:, 2 * n :] + r * g[:, 2 * n :])
        return z * h + (1 - z) * candidate

    weights = torch.randn(3, n, dtype=torch.float64)
    expected = equations(*inputs)
    got = gru_step(*inputs)
    assert_close(got, expected)
    for e, g in zip(*(torch.autograd.grad((y * weights).sum(), inputs) for y in (expected, got))):
        assert_close(g, e)


@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, True), (2, False)])
@pytest.mark.parametrize("lengths", [[5, 2, 4], [3, 3, 3]])
def test_fused_gru_trains_on_a_cpu_as_torch_gru(layers, bidirectional, lengths):
    """Its own loop in training (FusedGRU._train_on_cpu): outputs, finals and every
    gradient as torch.nn.GRU's over the same PackedSequence."""
    torch.manual_seed(0)
    fused = FusedGRU(4, 3, layers, bidirectional, dropout=0.0).double()
    x = torch.randn(3, max(lengths), 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor(lengths)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, finals = fused.gru(packed)
    expected = (
        pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0],
        finals[-(1 + bidirectional) :],
    )
    got = fused(x, lengths)
    weights = [torch.randn_like(t) for t in expected]
    results = []
    for outputs in (expected, got):
        loss = sum((t * w).sum() for t, w in zip(outputs, weights))
        results.append(torch.autograd.grad(loss, [x, *fused.parameters()]))
    for e, g in zip(expected, got):
        assert_close(g, e)
    for e, g in zip(*results):
        assert_close(g, e)


def test_fused_gru_runs_in_the_cpu_autocast_dtype():
    torch.manual_seed(0)
    fused = FusedGRU(4, 3, 1, bidirectional=True, dropout=0.0).float()
    x, lengths = torch.randn(3, 5, 4).float(), torch.tensor([5, 2, 4])
    reference, _ = fused(x, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, finals = fused(x, lengths)
    assert outputs.dtype == finals.dtype == torch.bfloat16
    assert_close(outputs.float(), reference, atol=2e-2, rtol=0)
    outputs.float().sum().backward()  # gradients reach the float32 parameters
    assert fused.gru.weight_hh_l0.grad.dtype == torch.float32


@pytest.mark.parametrize("name", ["gru", "gru1", "gru2", "gru3", "tanh", "lstm", "gru_reset_after"])
def test_padding_never_changes_states(name):
    from seq2seq.cells import make_recurrent_layer

    torch.manual_seed(0)
    layer = make_recurrent_layer(name, 4, 3, layers=2, bidirectional=True, dropout=0.0)
    x, lengths = torch.randn(2, 6, 4), torch.tensor([3, 6])
    outputs, finals = layer(x, lengths)
    alone, alone_finals = layer(x[:1, :3], lengths[:1])
    assert_close(outputs[0, :3], alone[0])
    assert_close(finals[:, 0], alone_finals[:, 0])
    assert outputs[0, 3:].abs().sum() == 0


def test_lstm_and_tanh_cells_keep_state_sizes():
    assert LSTMCell(3, 4).state_size == 8
    assert TanhCell(3, 4).state_size == 4


def test_tanh_in_place_equals_torch_tanh_in_search_and_training():
    x = torch.linspace(-30, 30, 10_001, dtype=torch.float32)
    with torch.inference_mode():  # search: the 2σ(2x) - 1 form
        assert_close(tanh_(x.clone()), torch.tanh(x), atol=2e-7, rtol=0)
        assert not torch.equal(tanh_(x.clone()), torch.tanh(x))  # not torch's kernel
        # bf16: the float32 form rounded, at most one bf16 step from torch's bf16 tanh
        assert_close(tanh_(x.bfloat16()), torch.tanh(x.bfloat16()), atol=1e-7, rtol=8e-3)
    leaf = x.clone().requires_grad_()
    y = tanh_(leaf * 1.0)  # training: the same form, torch's backward
    y.sum().backward()
    assert_close(y, torch.tanh(x), atol=2e-7, rtol=0)
    assert_close(leaf.grad, 1 - torch.tanh(x) ** 2, atol=5e-7, rtol=0)
