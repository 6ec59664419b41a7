"""Tensors used at every step of a training loop, their gradients gathered once.

Autograd gives each step's product its own gradient of the shared operand:
for a weight, a product over the batch only (K ≈ 100 rows) and an addition
into the whole matrix; for the attention memory, an addition of a [B, S, N]
tensor. That is T products and T additions per batch. Here each step's
backward keeps its (input, output gradient) pair instead, and a node on the
loop's first state, whose backward autograd runs after every step's,
multiplies the stacked pairs once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function

from seq2seq.onednn import cat_rows


class _SharedOperand:
    """One operand of a product made at every step of one forward pass.

    `start(first)` gives the loop's first state: every step's input must depend on it.
    One forward pass, one backward pass.
    """

    def __init__(self, *shared: Tensor | None) -> None:
        self.shared = shared
        self.pairs: list[tuple[Tensor, Tensor]] = []
        self.gathered_already = False
        device = shared[0].device.type
        dtype = shared[0].dtype
        if torch.is_autocast_enabled(device):  # cast once, not at every step
            dtype = torch.get_autocast_dtype(device)
        self.dtype = dtype
        self.operands = tuple(None if t is None else t.detach().to(dtype) for t in shared)

    def start(self, first: Tensor) -> Tensor:
        """`first`, joined to the node that gathers the shared operands' gradients.

        Not kept here: the node refers to this object, and a reference back to
        its output would be a cycle that keeps every batch's graph alive.
        """
        return _Gather.apply(first, self, *self.shared)

    def __call__(self, x: Tensor) -> Tensor:
        return _Step.apply(x, self)

    def product(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def input_gradient(self, grad: Tensor) -> Tensor:
        raise NotImplementedError

    def gathered(self, inputs: list[Tensor], grads: list[Tensor]) -> tuple[Tensor | None, ...]:
        """The shared operands' gradients from every step's (input, output gradient)."""
        raise NotImplementedError


class StepWeight(_SharedOperand):
    """x Wᵀ + b at every step. weight [N, K] (or a differentiable function of
    parameters), bias [N] or None."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__(weight, bias)

    def product(self, x: Tensor) -> Tensor:
        return F.linear(x, *self.operands)

    def input_gradient(self, grad: Tensor) -> Tensor:
        return grad @ self.operands[0]

    def gathered(self, inputs: list[Tensor], grads: list[Tensor]) -> tuple[Tensor | None, ...]:
        x, g = cat_rows(inputs), cat_rows(grads)  # zero rows add nothing
        # in g's dtype, as autograd's under autocast (the sum accumulates in float32 anyway):
        # a float32 copy of g first took ~2.4 ms of a bf16 step at hidden 512 (profiled)
        bias = None if self.operands[1] is None else g.sum(0)
        return g.t() @ x, bias


class StepMemory(_SharedOperand):
    """Attention's mix of a per-sentence memory at every step: α [B, k, S] -> α V [B, k, N]."""

    def __init__(self, memory: Tensor) -> None:
        super().__init__(memory)

    def product(self, x: Tensor) -> Tensor:
        return torch.bmm(x, self.operands[0])

    def input_gradient(self, grad: Tensor) -> Tensor:
        return torch.bmm(grad, self.operands[0].transpose(1, 2))

    def gathered(self, inputs: list[Tensor], grads: list[Tensor]) -> tuple[Tensor | None, ...]:
        return (torch.bmm(torch.cat(inputs, 1).transpose(1, 2), torch.cat(grads, 1)),)


class _Step(Function):
    @staticmethod
    def forward(ctx, x: Tensor, owner: _SharedOperand) -> Tensor:
        ctx.owner, ctx.dtype = owner, x.dtype
        x = x.to(owner.dtype)
        ctx.save_for_backward(x)
        return owner.product(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        if ctx.owner.gathered_already:  # a second backward pass: its gradient would be lost
            raise RuntimeError("a step's backward ran after the gradients were gathered")
        grad = grad.to(ctx.owner.dtype)
        ctx.owner.pairs.append((x, grad))
        return ctx.owner.input_gradient(grad).to(ctx.dtype), None


class _Gather(Function):
    @staticmethod
    def forward(ctx, first: Tensor, owner: _SharedOperand, *shared: Tensor | None) -> Tensor:
        ctx.owner, ctx.dtypes = owner, [None if t is None else t.dtype for t in shared]
        return first.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        pairs, ctx.owner.pairs = ctx.owner.pairs, []
        ctx.owner.gathered_already = True
        if not pairs:
            return grad, None, *[None] * len(ctx.dtypes)
        gathered = ctx.owner.gathered([x for x, _ in pairs], [g for _, g in pairs])
        return grad, None, *[None if g is None else g.to(d) for g, d in zip(gathered, ctx.dtypes)]
