"""The training loss: the output layer and label-smoothed cross-entropy, fused.

Run apart, the output layer makes logits [N, V] and torch's cross-entropy then
passes over them about ten times in forward and backward (log-softmax, its
backward, the smoothing term's sum and its gradient added, the gradient of
the padded rows filled and copied): ~35 ms of a ~290 ms bf16 step at 8,000
words (EPYC, 2 threads, profiled). Here the forward computes each row's
gradient, softmax - target, a block of rows at a time while the block is in
cache, and writes it over the logits; backward is the two products alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function

from seq2seq.onednn import cat_rows
from seq2seq.tokenizer import PAD_ID

CHUNK = 64  # rows a block on a CPU: 64 x 8,000 float32 is 2 MB (faster than 32 or 256, measured)


def output_loss(
    features: Tensor, weight: Tensor, bias: Tensor, tgt_out: Tensor, label_smoothing: float
) -> Tensor:
    """Σ over real tokens of the cross-entropy of softmax(features Wᵀ + b), float32
    (float64 for float64 inputs).

    The same as F.cross_entropy(..., label_smoothing, ignore_index=PAD_ID) summed:
    the target is (1 - ε) on the reference word and ε / V on every word.
    features [..., L], weight [V, L], bias [V], tgt_out [...].
    """
    return _OutputLoss.apply(features, weight, bias, tgt_out, label_smoothing)


def _compute_dtype(x: Tensor) -> torch.dtype:
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


_spare: list[Tensor] = []  # the buffer the last backward finished with


def _buffer(size: int, like: Tensor) -> Tensor:
    """An uninitialised 1-D tensor of at least `size` elements for the [N, V] gradient:
    the last backward's where it is large enough and alike.

    glibc maps every allocation over 32 MB afresh from the system, and a new
    [2,176, 8,000] bf16 tensor took as long to fault its pages in as the product
    that filled it (21 against 11 ms, measured). A graph dropped before its
    backward keeps its buffer: the next forward makes a new one.
    """
    if _spare:
        buffer = _spare.pop()
        if buffer.numel() >= size and (buffer.dtype, buffer.device) == (like.dtype, like.device):
            return buffer
    return like.new_empty(size)


class _OutputLoss(Function):
    @staticmethod
    def forward(ctx, features, weight, bias, tgt_out, label_smoothing):
        dtype = _compute_dtype(features)
        ctx.dtypes = features.dtype, weight.dtype, bias.dtype
        ctx.shape = features.shape
        x = cat_rows([features.flatten(0, -2).to(dtype)])  # few product shapes for oneDNN
        targets = F.pad(tgt_out.flatten(), (0, x.size(0) - tgt_out.numel()), value=PAD_ID)
        w = weight.to(dtype)
        ctx.buffer = _buffer(x.size(0) * w.size(0), x)
        grad = ctx.buffer[: x.size(0) * w.size(0)].view(x.size(0), w.size(0))
        with torch.autocast(x.device.type, enabled=False):
            torch.mm(x, w.t(), out=grad)  # the logits less the bias, then their gradient
        words, wide = grad.size(1), torch.promote_types(grad.dtype, torch.float32)
        # the bias added block by block: addmm first wrote it into all of [N, V]
        bias = bias.to(wide)
        losses = grad.new_empty(grad.size(0), dtype=wide)
        block = CHUNK if grad.device.type == "cpu" else max(grad.size(0), 1)  # a GPU: one launch
        for start in range(0, grad.size(0), block):
            rows = slice(start, start + block)
            z, target = grad[rows] + bias, targets[rows, None]
            total, picked = z.sum(1), z.gather(1, target).squeeze(1)
            # torch's softmax kernel makes the max, exp and sum passes in one (~3 ms of a
            # bf16 step at 2,000 x 8,000, measured); the cross-entropy is then -log p_t
            # plus the smoothing term: lse - (1 - ε) z_t - ε/V Σ z = -log p_t + ε (z_t - Σ z / V)
            p = torch.softmax(z, 1)
            p_target = p.gather(1, target).squeeze(1)
            nll = p_target.log().neg_()
            # p_t below float's normal range has lost its digits (or is 0): those rows
            # from the log-sum-exp itself
            lost = p_target < torch.finfo(p.dtype).tiny
            if lost.any():
                nll[lost] = torch.logsumexp(z[lost], 1) - picked[lost]
            losses[rows] = nll + label_smoothing * (picked - total / words)
            p.sub_(label_smoothing / words)  # softmax - target
            p.scatter_add_(1, target, p.new_full(target.shape, label_smoothing - 1))
            grad[rows] = p
        padded = targets == PAD_ID
        grad.index_fill_(0, padded.nonzero().squeeze(1), 0)  # those rows only
        ctx.save_for_backward(x, w, grad)
        return losses.masked_fill_(padded, 0).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        x, w, grad = ctx.saved_tensors
        features_dtype, weight_dtype, bias_dtype = ctx.dtypes
        rows = ctx.shape.numel() // ctx.shape[-1]
        # the scalar after the products: their inputs stay the exact (bf16) gradients
        wide = grad_loss.dtype
        grad_features = (grad @ w)[:rows].to(wide).mul_(grad_loss).view(ctx.shape)
        # [x 1]ᵀ grad: the weight's gradient, transposed, and the bias's as one more row.
        # Not gradᵀ x: that copied the [N, V] gradient to transpose it, and the bias's
        # sum upcast it (each ~9 ms at 2,000 x 8,000 in bf16, profiled)
        ones = F.pad(x, (0, 1), value=1)
        weight_and_bias = ones.t() @ grad
        grad_weight = grad.new_empty(weight_and_bias[:-1].t().shape, dtype=weight_dtype)
        grad_weight.copy_(weight_and_bias[:-1].t()).mul_(grad_loss)  # the one transposing copy
        grad_bias = weight_and_bias[-1].to(wide).mul_(grad_loss)
        _spare.append(ctx.buffer)
        return (
            grad_features.to(features_dtype),
            grad_weight,
            grad_bias.to(bias_dtype),
            None,
            None,
        )
