import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from seq2seq.stepweight import StepWeight


def run(x: torch.Tensor, first: torch.Tensor, weight, bias, deferred: bool) -> torch.Tensor:
    """h_t = tanh(x_t + U h_{t-1} + b) over x [T, B, n]; the sum of the states."""
    if deferred:
        layer = StepWeight(weight, bias)
        product, hidden = layer, layer.start(first)
    else:
        product, hidden = (lambda h: F.linear(h, weight, bias)), first
    total = 0
    for x_t in x:
        hidden = torch.tanh(x_t + product(hidden))
        total = total + (hidden * torch.arange(hidden.size(1))).sum()
    return total


def test_a_step_weight_has_the_gradients_of_a_weight_used_at_every_step(float64):
    torch.manual_seed(0)
    T, B, n = 5, 3, 4
    leaves = {
        "x": torch.randn(T, B, n),
        "first": torch.randn(B, n),
        "weight": torch.randn(n, n),
        "bias": torch.randn(n),
    }
    results = []
    for deferred in (False, True):
        inputs = {k: v.clone().requires_grad_() for k, v in leaves.items()}
        total = run(**inputs, deferred=deferred)
        total.backward()
        results.append((total.detach(), [inputs[k].grad for k in leaves]))
    (value, grads), (deferred_value, deferred_grads) = results
    assert_close(deferred_value, value)
    for ours, theirs in zip(deferred_grads, grads):
        assert_close(ours, theirs)


def test_a_step_weight_under_bf16_autocast_is_close_to_plain_autocast():
    torch.manual_seed(1)
    T, B, n = 6, 8, 16
    x, first, start = torch.randn(T, B, n), torch.randn(B, n), torch.randn(n, n) / n**0.5
    grads = []
    for deferred in (False, True):
        weight = start.clone().requires_grad_()
        bias = torch.zeros(n, requires_grad=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            total = run(x, first, weight, bias, deferred)
        total.backward()
        assert weight.grad.dtype == bias.grad.dtype == torch.float32
        grads.append((weight.grad, bias.grad))
    for ours, theirs in zip(grads[1], grads[0]):
        assert_close(ours, theirs, rtol=0.05, atol=0.05 * theirs.abs().max().item())


def test_without_gradients_a_step_weight_is_a_plain_product():
    weight, bias, first = torch.randn(3, 2), torch.randn(3), torch.randn(4, 2)
    with torch.no_grad():
        layer = StepWeight(weight, bias)
        assert layer.start(first).equal(first)
        assert_close(layer(first), F.linear(first, weight, bias))


def test_a_step_weight_serves_one_backward_pass_and_refuses_a_second():
    layer = StepWeight(torch.randn(3, 3, requires_grad=True), None)
    first = layer.start(torch.randn(2, 3))
    layer(first).sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="after the gradients were gathered"):
        layer(first).sum().backward()  # its gradient would be lost, not added
