"""Dropout with its mask drawn by `torch.rand` on a CPU.

torch's CPU dropout draws the mask with `bernoulli_`: dropout of [160, 14, 256]
with its backward took 4.5-5 ms on an EPYC (2 threads, bf16 and float32),
`rand < keep` 1.7 ms; a training step calls it three times. The mask has the
same law. On a GPU torch's own fused kernel is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (training)."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training)
    keep = 1 - p
    scale = (torch.rand(x.shape) < keep).to(x.dtype).mul_(1 / keep)
    return x * scale


class Dropout(nn.Dropout):
    """torch.nn.Dropout through `dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)
