import pytest
import torch
from torch.testing import assert_close

from seq2seq.encoders import GRConvEncoder, RNNEncoder

pytestmark = pytest.mark.usefixtures("float64")


def test_grconv_three_words_by_hand():
    torch.manual_seed(0)
    enc = GRConvEncoder(torch.nn.Embedding(10, 4), hidden_size=3, dropout=0.0).eval()
    ids = torch.tensor([[5, 6, 7]])
    out = enc(ids, torch.tensor([3]))
    x = enc.embedding.weight[[5, 6, 7]]
    h0 = x @ enc.leaf.weight.T  # h_j^(0) = U x_j
    Wc, bc, Wg, bg = enc.candidate.weight, enc.candidate.bias, enc.gate.weight, enc.gate.bias

    def combine(left, right):
        pair = torch.cat([left, right])
        cand = torch.tanh(Wc @ pair + bc)
        w = torch.softmax(Wg @ pair + bg, dim=0)
        return w[0] * cand + w[1] * left + w[2] * right

    h1 = torch.stack([combine(h0[0], h0[1]), combine(h0[1], h0[2])])
    h2 = combine(h1[0], h1[1])
    assert_close(out.summary[0], h2)
    assert_close(out.states[0], torch.cat([h0, h1, h2[None]]))
    assert out.mask.tolist() == [[True] * 6]


def encoders():
    emb = torch.nn.Embedding(12, 5)
    yield GRConvEncoder(emb, 4, 0.0)
    for cell in ("gru", "gru_reset_after", "lstm"):
        yield RNNEncoder(torch.nn.Embedding(12, 5), cell, 4, 2, True, 0.0)


@pytest.mark.parametrize("encoder", list(encoders()), ids=["grconv", "gru", "gru_ra", "lstm"])
def test_sentence_alone_equals_sentence_in_padded_batch(encoder):
    encoder.eval()
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]])
    lengths = torch.tensor([3, 5])
    batch = encoder(ids, lengths)
    alone = encoder(ids[:1, :3], lengths[:1])
    assert_close(batch.summary[0], alone.summary[0])
    real = batch.states[0][batch.mask[0]]
    assert_close(real, alone.states[0][alone.mask[0]])


def test_grconv_length_one_sentence_summary_is_its_leaf():
    enc = GRConvEncoder(torch.nn.Embedding(10, 4), 3, 0.0)
    out = enc(torch.tensor([[5, 0, 0], [1, 2, 3]]), torch.tensor([1, 3]))
    assert_close(out.summary[0], enc.leaf(enc.embedding.weight[5]))
    assert out.mask[0].sum() == 1
