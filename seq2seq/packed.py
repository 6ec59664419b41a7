"""Inference on a CPU: a model's layers swapped for ones whose products are packed
once for oneDNN (onednn.py), and the float32 FusedGRU's search loop over them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seq2seq.cells import FusedGRU, gru_layers
from seq2seq.onednn import PackedLinear


class PackedGRU(nn.Module):
    """A FusedGRU's torch.nn.GRU for inference, its products packed.

    torch.nn.GRU multiplies by U with torch's own products, MKL's AVX2 kernels on
    AMD CPUs: a step of 24 rows (a server's merged search) took 430 µs, packed
    171 µs (512 x 1,536, one thread, an EPYC, measured); searches of 48 and of 3
    sentences ran 11-12 % faster, with the same translations. Like torch.nn.GRU over
    a PackedSequence, each step runs the rows of the sentences still going only.
    """

    def __init__(self, layer: FusedGRU) -> None:
        super().__init__()
        gru = layer.gru
        suffixes = ["", "_reverse"][: 1 + gru.bidirectional]
        self.layers = nn.ModuleList(
            nn.ModuleList(
                nn.ModuleList(
                    PackedLinear(
                        getattr(gru, f"weight_{kind}_l{k}{suffix}"),
                        getattr(gru, f"bias_{kind}_l{k}{suffix}"),
                    )
                    for kind in ("ih", "hh")
                )
                for suffix in suffixes
            )
            for k in range(gru.num_layers)
        )

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, m], lengths [B] -> outputs [B, T, n*dirs], finals [dirs, B, n]."""
        layers = [[(linear, recurrent, None) for linear, recurrent in d] for d in self.layers]
        return gru_layers(x, lengths, layers)


def pack_linear_layers(module: nn.Module) -> None:
    """Replace, in place, every torch.nn.Linear under `module` by a PackedLinear, and every
    float32 FusedGRU by a PackedGRU.

    The module is for inference only from then on (no gradients flow through
    the packed layers).
    """
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, PackedLinear(child.weight, child.bias))
        elif isinstance(child, FusedGRU) and child.gru.weight_hh_l0.dtype == torch.float32:
            # (a bf16 torch.nn.GRU: no faster packed, measured, and it keeps its gates in
            # float32, which gru_step in bf16 would not)
            setattr(module, name, PackedGRU(child))
        else:
            pack_linear_layers(child)
