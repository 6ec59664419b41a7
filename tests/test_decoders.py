import pytest
import torch
from torch.testing import assert_close

from seq2seq.decoders import AttentionDecoder, ContextDecoder, DecoderState, maxout
from seq2seq.encoders import EncoderOutput

B, S, D, E, H, L = 2, 4, 6, 5, 3, 4


def encoded() -> EncoderOutput:
    torch.manual_seed(0)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    states = torch.randn(B, S, D) * mask[..., None]
    return EncoderOutput(states, mask, torch.randn(B, D))


def test_maxout_takes_the_larger_of_each_pair():
    assert maxout(torch.tensor([[1.0, 5.0, 3.0, 2.0]])).tolist() == [[5.0, 3.0]]


def test_context_decoder_step_is_the_paper_equation(float64):
    torch.manual_seed(1)
    decoder = ContextDecoder(E, D, H, L, dropout=0.0).double().eval()
    enc = encoded()
    enc = EncoderOutput(enc.states.double(), enc.mask, enc.summary.double())
    state = decoder.init_state(enc)
    c, h, e = enc.summary, state.hidden, torch.randn(B, E)
    assert_close(h, torch.tanh(decoder.init_hidden(c)))  # h'_0 = tanh(V' c)
    features, new = decoder.step(e, state)
    # Cho et al. 2014a, appendix A.1.2, with the reset gate applied after U (torch's form)
    i_r, i_z, i_n = decoder.input(e).chunk(3, -1)
    u_r, u_z, u_n = (decoder.recurrent(h) + decoder.context_gates(c)).chunk(3, -1)
    r, z = torch.sigmoid(i_r + u_r), torch.sigmoid(i_z + u_z)
    expected_h = z * h + (1 - z) * torch.tanh(i_n + r * u_n)
    assert_close(new.hidden, expected_h)
    s = decoder.out_hidden(expected_h) + decoder.out_embedded(e) + decoder.out_context(c)
    assert_close(features, s.view(B, L, 2).max(-1).values)
    assert new.context_gates is state.context_gates  # c enters every step unchanged


def test_attention_weights_cover_real_positions_only():
    torch.manual_seed(2)
    decoder = AttentionDecoder(E, D, D, H, 7, L, dropout=0.0).eval()
    enc = encoded()
    state = decoder.init_state(enc)
    _, new = decoder.step(torch.randn(B, E), state)
    assert_close(new.attention.sum(-1), torch.ones(B))
    assert (new.attention[1, 2:] == 0).all()
    assert_close(new.context, torch.einsum("bs,bsd->bd", new.attention, enc.states))


@pytest.mark.parametrize("decoder_class", [ContextDecoder, AttentionDecoder])
def test_teacher_forcing_equals_stepping(decoder_class):
    torch.manual_seed(3)
    if decoder_class is ContextDecoder:
        decoder = ContextDecoder(E, D, H, L, dropout=0.0).eval()
    else:
        decoder = AttentionDecoder(E, D, D, H, 7, L, dropout=0.0).eval()
    state = decoder.init_state(encoded())
    embedded = torch.randn(B, 3, E)
    with torch.no_grad():
        forced = decoder(embedded, state)
        steps = []
        for t in range(3):
            features, state = decoder.step(embedded[:, t], state)
            steps.append(features)
    assert_close(forced, torch.stack(steps, 1))


def test_select_reorders_every_tensor_and_keeps_none():
    state = DecoderState(hidden=torch.arange(3.0)[:, None], context=torch.arange(3.0)[:, None])
    picked = state.select(torch.tensor([2, 2, 0]))
    assert picked.hidden.squeeze(1).tolist() == [2.0, 2.0, 0.0]
    assert picked.context.squeeze(1).tolist() == [2.0, 2.0, 0.0]
    assert picked.memory is None and picked.context_gates is None
