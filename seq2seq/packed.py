"""Inference on a CPU: a model's layers swapped for ones whose products are packed
once for oneDNN (onednn.py), and the float32 FusedGRU's search loop over them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from seq2seq.cells import FusedGRU, gru_direction, unpack
from seq2seq.onednn import PackedLinear, linear_rows


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
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        rows = packed.batch_sizes.tolist()  # sentences still going at each step, longest first
        data = packed.data  # [tokens, m], step by step
        for directions in self.layers:
            results = []
            for (input_layer, recurrent), reverse in zip(directions, (False, True)):
                input_gates = linear_rows(input_layer, data).split(rows)
                zeros = data.new_zeros(rows[-1 if reverse else 0], recurrent.weight.size(1))
                results.append(gru_direction(input_gates, recurrent, zeros, reverse))
            data = torch.cat([out for out, _ in results], dim=-1)
        return unpack(packed, data, [final for _, final in results], x.size(1))


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
