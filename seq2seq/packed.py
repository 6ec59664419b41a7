"""Linear layers with their weights packed once for oneDNN: inference on a CPU.

A bf16 matrix product on a CPU reorders its weight into oneDNN's blocked
layout at every call, and a search calls each decoder layer once per step.
Packed once, the products run 25-35 % faster (512 x 1,536 weights, 5 to 350
rows, one thread, measured). float32 products are packed on AMD CPUs only:
torch's own (MKL) take AVX2 kernels there whatever the CPU has, and oneDNN's
ran 2.2-3.2x faster (an AVX-512 EPYC, 2 threads, measured); on an Intel Xeon
packed float32 products ran 7 % slower than MKL's in a search (measured).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from seq2seq.cells import FusedGRU, gru_direction, unpack


def can_pack(dtype: torch.dtype) -> bool:
    """Whether packed products of `dtype` are worth it with this torch build and CPU."""
    if not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return dtype == torch.float32 and cpu_vendor() == "AuthenticAMD"


@functools.cache
def cpu_vendor() -> str:
    """The CPU's vendor as Linux names it ("GenuineIntel", "AuthenticAMD"); "" elsewhere."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


class PackedLinear(nn.Module):
    """y = x Wᵀ + b for inference, W packed once.

    `weight` and `bias` stay readable as they were (a shortlist takes rows of
    the output layer's).
    """

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight.detach(), None if bias is None else bias.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.weight.dtype)  # autocast does not cast for this operator
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


ROW_BLOCK = 128


def linear_rows(layer: nn.Module, x: Tensor) -> Tensor:
    """layer(x) for x [..., m] with many rows (whole sentences at once).

    Under CPU autocast, and in a packed layer, oneDNN caches a
    matrix-product primitive, with its own scratch memory, per shape; every
    batch brings new row counts, so a bf16 run's memory grew for minutes, and
    a search built a new primitive for every new batch (0.6 ms each). Rows are
    padded to a multiple of ROW_BLOCK: a few shapes, reused, for a few zero rows.
    """
    on_onednn = torch.is_autocast_enabled("cpu") or isinstance(layer, PackedLinear)
    if not (x.device.type == "cpu" and on_onednn):
        return layer(x)
    flat = x.flatten(0, -2)
    rows = flat.shape[0]
    padding = -rows % ROW_BLOCK
    out = layer(nn.functional.pad(flat, (0, 0, 0, padding)))
    # split, not a slice: a slice's backward fills a zero tensor of the whole output
    return out.split([rows, padding])[0].unflatten(0, x.shape[:-1])


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
