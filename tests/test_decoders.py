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
    x = torch.randn(3, 4, 16)
    training = maxout(x)  # grad mode on: max(dim)
    with torch.no_grad():  # search's path gives the same values
        assert maxout(x).equal(training)


def test_context_decoder_step_is_the_paper_equation(float64):
    torch.manual_seed(1)
    decoder = ContextDecoder(E, D, H, L, dropout=0.0).double().eval()
    enc = encoded()
    enc = EncoderOutput(enc.states.double(), enc.mask, enc.summary.double())
    state = decoder.init_state(enc)
    c, h, e = enc.summary, state.hidden, torch.randn(B, E)
    assert_close(h, torch.tanh(decoder.init_hidden(c)))  # h'_0 = tanh(V' c)
    features, new = decoder.step(decoder.word_inputs(e), state)
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
    _, new = decoder.step(decoder.word_inputs(torch.randn(B, E)), state)
    assert_close(new.attention.sum(-1), torch.ones(B))
    assert (new.attention[1, 2:] == 0).all()


def float64_attention() -> tuple[AttentionDecoder, EncoderOutput, DecoderState]:
    torch.manual_seed(2)
    decoder = AttentionDecoder(E, D, D, H, 7, L, dropout=0.0).double().eval()
    enc = encoded()
    enc = EncoderOutput(enc.states.double(), enc.mask, enc.summary.double())
    return decoder, enc, decoder.init_state(enc)


def test_attention_weights_are_bahdanaus_equation(float64):
    decoder, enc, state = float64_attention()
    _, new = decoder.step(decoder.word_inputs(torch.randn(B, E, dtype=torch.float64)), state)
    # e_ij = vᵀ tanh(U_a m_j + W_a h_{i-1}), α_i = softmax over the real positions
    sums = decoder.key(enc.states) + decoder.query(state.hidden)[:, None]
    energies = decoder.energy(torch.tanh(sums)).squeeze(-1).masked_fill(~enc.mask, float("-inf"))
    assert_close(new.attention, energies.softmax(-1))


def test_attention_mixes_projected_states_as_the_equation_projects_the_context(float64):
    decoder, enc, state = float64_attention()
    e = torch.randn(B, E, dtype=torch.float64)
    features, new = decoder.step(decoder.word_inputs(e), state)
    # Bahdanau et al.: c_i = Σ_j α_ij m_j enters the GRU (C_a c_i) and the output (O_c c_i)
    context = torch.einsum("bs,bsd->bd", new.attention, enc.states)
    i_r, i_z, i_n = (decoder.input(e) + decoder.input_context(context)).chunk(3, -1)
    h_r, h_z, h_n = decoder.recurrent(state.hidden).chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    expected_h = z * state.hidden + (1 - z) * torch.tanh(i_n + r * h_n)
    assert_close(new.hidden, expected_h)
    s = decoder.out_hidden(expected_h) + decoder.out_embedded(e) + decoder.out_context(context)
    assert_close(features, maxout(s))


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
            features, state = decoder.step(decoder.word_inputs(embedded[:, t]), state)
            steps.append(features)
    assert_close(forced, torch.stack(steps, 1))


def test_reorder_moves_hypotheses_and_keep_drops_sentences():
    # two sentences with two beams each; keys are per sentence, hidden per hypothesis
    state = DecoderState(hidden=torch.arange(4.0)[:, None], keys=torch.tensor([[[10.0]], [[20.0]]]))
    picked = state.reorder(torch.tensor([1, 1, 3, 2]))
    assert picked.hidden.squeeze(1).tolist() == [1.0, 1.0, 3.0, 2.0]
    assert picked.keys is state.keys and picked.mask is None  # shared by a sentence's beams
    kept = picked.keep(torch.tensor([1]), beams=2)
    assert kept.hidden.squeeze(1).tolist() == [3.0, 2.0]
    assert kept.keys.flatten().tolist() == [20.0]


def test_beams_of_a_sentence_share_its_attention_memory():
    torch.manual_seed(4)
    decoder = AttentionDecoder(E, D, D, H, 7, L, dropout=0.0).eval()
    state = decoder.init_state(encoded())
    e = torch.randn(B, E)
    with torch.no_grad():
        alone, _ = decoder.step(decoder.word_inputs(e), state)
        beams, _ = decoder.step(
            decoder.word_inputs(e.repeat_interleave(3, 0)),
            state.reorder(torch.arange(B).repeat_interleave(3)),
        )
    assert_close(beams, alone.repeat_interleave(3, 0))


@pytest.mark.parametrize("decoder_class", [ContextDecoder, AttentionDecoder])
def test_teacher_forcing_gradients_equal_those_of_stepping(decoder_class, float64):
    # forward multiplies the recurrent weights' gradients out once (StepWeight);
    # step is plain autograd: every parameter's gradient must agree
    torch.manual_seed(4)
    if decoder_class is ContextDecoder:
        decoder = ContextDecoder(E, D, H, L, dropout=0.0).double()
    else:
        decoder = AttentionDecoder(E, D, D, H, 7, L, dropout=0.0).double()
    enc = encoded()
    enc = EncoderOutput(enc.states.double().requires_grad_(), enc.mask, enc.summary.double())
    embedded = torch.randn(B, 4, E, requires_grad=True)
    weights = torch.randn(B, 4, L)

    def gradients(features: torch.Tensor) -> list[torch.Tensor]:
        (features * weights).sum().backward()
        grads = [p.grad.clone() for p in decoder.parameters()] + [embedded.grad, enc.states.grad]
        for tensor in [*decoder.parameters(), embedded, enc.states]:
            tensor.grad = None
        return grads

    forced = gradients(decoder(embedded, decoder.init_state(enc)))
    state, steps = decoder.init_state(enc), []
    for t in range(4):
        features, state = decoder.step(decoder.word_inputs(embedded[:, t]), state)
        steps.append(features)
    stepped = gradients(torch.stack(steps, 1))
    for ours, theirs in zip(forced, stepped):
        assert_close(ours, theirs)


def test_search_projects_only_the_real_positions_of_a_padded_batch(float64):
    torch.manual_seed(2)
    decoder = AttentionDecoder(E, D, D, H, 7, L, dropout=0.0).double().eval()
    lengths = torch.tensor([40] + [2] * 9)  # 400 positions, 58 real: search gathers them
    mask = torch.arange(40) < lengths[:, None]
    enc = EncoderOutput(torch.randn(10, 40, D) * mask[..., None], mask, torch.randn(10, D))
    whole = decoder.init_state(enc)  # grad mode on: every position projected
    shapes = []
    decoder.key.register_forward_hook(lambda layer, args, out: shapes.append(args[0].shape))
    with torch.no_grad():
        gathered = decoder.init_state(enc)
    assert shapes[-1] == (58, D)
    assert_close(gathered.keys, whole.keys.detach(), rtol=1e-12, atol=0)
    for name in ("gate_values", "out_values"):
        assert_close(getattr(gathered, name), getattr(whole, name).detach(), rtol=1e-12, atol=0)
