import torch
from torch.testing import assert_close

from seq2seq.dropout import Dropout


def test_dropout_keeps_a_share_of_1_minus_p_scaled_and_its_gradient_is_the_mask():
    torch.manual_seed(0)
    layer = Dropout(0.3).train()
    x = torch.ones(200, 500, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert_close(x.grad, y.detach())


def test_dropout_is_the_identity_in_eval_mode_and_keeps_the_dtype():
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    assert Dropout(0.3).eval()(x) is x
    assert Dropout(0.3).train()(x).dtype == torch.bfloat16


def test_every_16_bits_of_a_64_bit_draw_keep_their_share():
    torch.manual_seed(0)
    kept = Dropout(0.5).train()(torch.ones(100_000, 4)) != 0  # column j: the j-th 16 bits
    assert_close(kept.float().mean(0), torch.full((4,), 0.5), atol=0.01, rtol=0)
