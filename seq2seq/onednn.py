"""Matrix products on oneDNN: weights packed once, and few product shapes.

A bf16 matrix product on a CPU reorders its weight into oneDNN's blocked
layout at every call, and a search calls each decoder layer once per step.
Packed once, the products run 25-35 % faster (512 x 1,536 weights, 5 to 350
rows, one thread, measured). float32 products are packed on AMD CPUs only:
torch's own (MKL) take AVX2 kernels there whatever the CPU has, and oneDNN's
ran 2.2-3.2x faster (an AVX-512 EPYC, 2 threads, measured); on an Intel Xeon
packed float32 products ran 7 % slower than MKL's in a search (measured).
oneDNN also makes a kernel for every product shape: `linear_rows` and
`ROW_BLOCK` keep the shapes few.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn


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


def cat_rows(tensors: list[Tensor]) -> Tensor:
    """torch.cat of [rows, d] tensors, with zero rows up to a multiple of ROW_BLOCK where
    oneDNN multiplies them (16-bit, on a CPU): a product over all rows (K = their sum)
    makes a kernel for each new sum otherwise."""
    first = tensors[0]
    on_onednn = first.device.type == "cpu" and first.dtype in (torch.bfloat16, torch.float16)
    padding = -sum(t.size(0) for t in tensors) % ROW_BLOCK if on_onednn else 0
    return torch.cat([*tensors, first.new_zeros(padding, first.size(1))])
