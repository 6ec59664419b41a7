import resource
import sys

import pytest
import torch

from seq2seq.allocator import keep_freed_memory


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_search_sized_tensors_reuse_freed_memory():
    assert keep_freed_memory()
    features = torch.randn(330, 256).bfloat16()
    output = torch.randn(8000, 256).bfloat16()

    def step() -> None:  # a beam-search step's [rows, vocabulary] tensors: 5 and 10 MB
        torch.log_softmax(features @ output.T, -1, dtype=torch.float32).amax()

    for _ in range(5):  # to the high-water mark
        step()
    before = page_faults()
    for _ in range(5):
        step()
    # without the setting each step faults its ~6,400 pages in again (32,000 here)
    assert page_faults() - before < 5_000
