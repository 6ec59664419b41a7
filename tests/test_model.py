import pytest
import torch
from helpers import tiny_model
from torch.ao.quantization import quantize_dynamic
from torch.testing import assert_close

from seq2seq.data import collate
from seq2seq.loss import output_loss

COMBOS = [("rnn", "attention"), ("rnn", "context"), ("grconv", "attention"), ("grconv", "context")]


def toy_batch():
    src = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    tgt = [[14, 15, 16], [17, 18, 19, 20], [21]]
    return collate(src, tgt)


@pytest.mark.parametrize("encoder, decoder", COMBOS)
def test_decode_step_equals_teacher_forcing_and_score(encoder, decoder):
    model = tiny_model(encoder=encoder, decoder=decoder, cell="gru")
    batch = toy_batch()
    with torch.no_grad():
        logits = model(batch)  # [B, T, V]
        log_probs = torch.log_softmax(logits, -1)
        state = model.init_state(model.encode(batch.src_ids, batch.src_lengths))
        for t in range(batch.tgt_in.size(1)):
            step, state = model.decode_step(batch.tgt_in[:, t], state)
            assert_close(step, log_probs[:, t])
        total, per_token = model.score(batch.src_ids, batch.src_lengths, batch.tgt_out)
    gathered = log_probs.gather(-1, batch.tgt_out[..., None]).squeeze(-1)
    gathered = gathered.masked_fill(batch.tgt_out == 0, 0)
    assert_close(per_token, gathered)
    assert_close(total, gathered.sum(1))
    assert logits.shape == (3, 5, 32)


@pytest.mark.parametrize("encoder, decoder", COMBOS)
def test_decoder_states_unchanged_by_padding(encoder, decoder):
    model = tiny_model(encoder=encoder, decoder=decoder, cell="gru")
    batch = toy_batch()
    alone = collate([[9, 10]], [[17, 18, 19, 20]])
    with torch.no_grad():
        _, together = model.score(batch.src_ids, batch.src_lengths, batch.tgt_out)
        _, single = model.score(alone.src_ids, alone.src_lengths, alone.tgt_out)
    assert_close(together[1], single[0])


@pytest.mark.parametrize("encoder, decoder", COMBOS)
def test_each_combination_overfits_eight_pairs(encoder, decoder):
    torch.manual_seed(0)
    src = [[4 + (i * 3 + j) % 20 for j in range(3 + i % 3)] for i in range(8)]
    tgt = [[s + 5 for s in reversed(x)] for x in src]
    batch = collate(src, tgt)
    model = (
        tiny_model(
            encoder=encoder,
            decoder=decoder,
            emb_size=16,
            hidden_size=32,
            maxout_size=16,
            attention_size=16,
        )
        .float()
        .train()
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss = model(batch, 0.0) / batch.num_tokens
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05


def test_tied_output_shares_the_embedding():
    model = tiny_model(tie_embeddings=True)
    assert model.output.weight is model.tgt_embedding.weight
    untied = tiny_model(tie_embeddings=False)
    assert untied.output.weight is not untied.tgt_embedding.weight


def loss_inputs(dtype=torch.float64, rows=(3, 5), words=50):
    torch.manual_seed(0)
    features = torch.randn(*rows, 8, dtype=dtype, requires_grad=True)
    weight = torch.randn(words, 8, dtype=dtype, requires_grad=True)
    bias = torch.randn(words, dtype=dtype, requires_grad=True)
    tgt_out = torch.randint(1, words, rows)
    tgt_out[0, 3:] = 0  # PAD
    return features, weight, bias, tgt_out


def reference_loss(features, weight, bias, tgt_out, label_smoothing):
    return torch.nn.functional.cross_entropy(
        torch.nn.functional.linear(features, weight, bias).flatten(0, 1),
        tgt_out.flatten(),
        ignore_index=0,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("rows", [(3, 5), (7, 23)])  # (7, 23): rows over loss.CHUNK
def test_output_loss_is_cross_entropy_of_the_output_layer(label_smoothing, rows):
    inputs = loss_inputs(rows=rows)
    results = []
    for loss_of in (reference_loss, output_loss):
        loss = loss_of(*inputs, label_smoothing)
        loss.backward(torch.tensor(0.5, dtype=loss.dtype))  # the trainer's scale reaches all
        results.append((loss, *(t.grad for t in inputs[:3])))
        for t in inputs[:3]:
            t.grad = None
    for expected, got in zip(*results):
        assert_close(got.double(), expected)


def test_output_loss_of_a_word_beyond_floats_range_is_exact():
    """p_t underflows float32 (a logit 200 below the row's others): the loss comes from
    the log-sum-exp, not log 0."""
    features, weight, bias, tgt_out = loss_inputs(torch.float32, rows=(2, 3))
    with torch.no_grad():
        bias[tgt_out[1, 0]] -= 200
    expected = reference_loss(*(t.double() for t in (features, weight, bias)), tgt_out, 0.1)
    got = output_loss(features, weight, bias, tgt_out, 0.1)
    assert torch.isfinite(got)
    assert_close(got.double(), expected, rtol=1e-5, atol=0)


def test_output_losses_alive_together_keep_their_own_gradients():
    """loss._buffer hands a finished backward's buffer to the next forward only."""
    first, second = loss_inputs(), loss_inputs(rows=(4, 6))
    expected = [torch.autograd.grad(reference_loss(*i, 0.1), i[:3]) for i in (first, second)]
    losses = [output_loss(*i, 0.1) for i in (first, second)]  # both graphs alive
    for loss, inputs, grads in zip(reversed(losses), (second, first), reversed(expected)):
        for got, e in zip(torch.autograd.grad(loss, inputs[:3]), grads):
            assert_close(got, e)


def test_output_loss_under_bf16_autocast_matches_float32():
    inputs = loss_inputs(torch.float32, rows=(9, 30), words=300)
    reference = reference_loss(*inputs, 0.1)
    expected = torch.autograd.grad(reference, inputs[:3])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = output_loss(*inputs, 0.1)
    got = torch.autograd.grad(loss, inputs[:3])
    assert loss.dtype == torch.float32
    assert_close(loss, reference, rtol=1e-2, atol=0)
    for g, e in zip(got, expected):
        assert g.dtype == torch.float32
        assert_close(g, e, rtol=0, atol=2e-2 * e.abs().max().item())


@pytest.mark.parametrize("decoder", ["attention", "context"])
def test_the_training_loss_is_the_cross_entropy_of_the_logits(decoder):
    model = tiny_model(decoder=decoder).double().train()
    batch = toy_batch()
    torch.manual_seed(1)
    logits = model(batch)
    torch.manual_seed(1)  # the same dropout masks
    loss = model(batch, 0.1)
    expected = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1),
        batch.tgt_out.flatten(),
        ignore_index=0,
        label_smoothing=0.1,
        reduction="sum",
    )
    assert_close(loss, expected)


@pytest.mark.parametrize("decoder", ["attention", "context"])
def test_a_step_over_step_tables_is_the_step_over_those_columns(decoder):
    model = tiny_model(decoder=decoder)
    batch = toy_batch()
    columns = torch.tensor([1, 3, 14, 15, 16, 21, 30])
    tables = model.step_tables(columns)
    with torch.no_grad():
        state = model.init_state(model.encode(batch.src_ids, batch.src_lengths))
        plain, plain_state = model.decode_step(torch.tensor([2, 14, 21]), state)
        looked_up, new_state = model.decode_step(torch.tensor([7, 2, 5]), state, tables)  # 7: BOS
    assert_close(new_state.hidden, plain_state.hidden)
    assert_close(looked_up, plain[:, columns].log_softmax(-1))  # renormalised over the columns


@pytest.mark.parametrize("int8", [False, True])
def test_the_output_layer_over_columns_is_those_columns_of_the_output(int8):
    model = tiny_model().float()
    if int8:
        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    columns = torch.tensor([1, 3, 7, 30])
    features = torch.randn(5, 8)
    expected = model.output(features)[:, columns]
    assert torch.allclose(model.step_tables(columns).output(features), expected, atol=1e-6)
