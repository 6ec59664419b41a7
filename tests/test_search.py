import math

import pytest
import torch
from helpers import tiny_model

from seq2seq.data import collate
from seq2seq.decoders import DecoderState
from seq2seq.model import Ensemble
from seq2seq.search import _beam_step, beam_search, greedy_search, length_penalty, top_k
from seq2seq.tokenizer import BOS_ID, EOS_ID, UNK_ID


class ScriptedModel(torch.nn.Module):
    """A fake decoder: the next-word distribution depends only on the previous word.

    Vocabulary: 0 pad, 1 unk, 2 bos, 3 eos, 4 "a", 5 "b".
    After BOS: a 0.6, b 0.4. After a: eos 0.5, a 0.1, b 0.4. After b: eos 0.9, a 0.1.
    """

    TABLE = {
        BOS_ID: {4: 0.6, 5: 0.4},
        4: {EOS_ID: 0.5, 4: 0.1, 5: 0.4},
        5: {EOS_ID: 0.9, 4: 0.1},
        EOS_ID: {EOS_ID: 1.0},
    }

    def encode(self, src_ids, src_lengths):
        return src_ids

    def init_state(self, encoded):
        return DecoderState(hidden=torch.zeros(encoded.size(0), 1))

    def decode_step(self, prev_ids, state, tables=None):
        log_probs = torch.full((len(prev_ids), 6), -1e9)
        for row, prev in enumerate(prev_ids.tolist()):
            for word, p in self.TABLE[prev].items():
                log_probs[row, word] = math.log(p)
        return log_probs, state


def run_beam(beam, nbest, alpha=0.0):
    src = collate([[4, 4, 4]], [[4]])
    return beam_search(
        ScriptedModel(),
        src.src_ids,
        src.src_lengths,
        beam=beam,
        alpha=alpha,
        max_len_a=1.0,
        max_len_b=2,
        nbest=nbest,
    )[0]


def test_scripted_beams_and_nbest_scores_by_hand():
    # complete hypotheses: b (0.4*0.9=.36), a (0.6*0.5=.30), a b (0.6*0.4*0.9=.216),
    # a a (0.6*0.1*0.5=.03), b a (0.4*0.1*0.5=.02)
    hyps = run_beam(beam=2, nbest=2)
    assert [h.tokens for h in hyps] == [[5], [4]]
    assert hyps[0].log_prob == pytest.approx(math.log(0.36), abs=1e-6)
    assert hyps[1].log_prob == pytest.approx(math.log(0.30), abs=1e-6)


def test_greedy_takes_the_locally_best_word():
    src = collate([[4, 4, 4]], [[4]])
    hyp = greedy_search(ScriptedModel(), src.src_ids, src.src_lengths, 1.0, 2)[0]
    assert hyp.tokens == [4] and hyp.log_prob == pytest.approx(math.log(0.3), abs=1e-6)


@pytest.mark.parametrize("max_len_b, longest", [(0, 0), (1, 1)])
def test_max_length_forces_an_end(max_len_b, longest):
    # source length 2 with EOS: the limit (EOS included) is 0.5 * 2 + max_len_b
    src = collate([[4]], [[4]])
    hyps = beam_search(
        ScriptedModel(),
        src.src_ids,
        src.src_lengths,
        beam=2,
        alpha=0.0,
        max_len_a=0.5,
        max_len_b=max_len_b,
        nbest=2,
    )[0]
    assert hyps and max(len(h.tokens) for h in hyps) == longest


def test_length_penalty_prefers_longer_with_larger_alpha():
    assert length_penalty(4, 0.0) == 1
    # "b" EOS: p = 0.36 over 2 tokens; "a b" EOS: p = 0.216 over 3 tokens
    short, long_ = math.log(0.36), math.log(0.216)
    assert short / length_penalty(2, 0.0) > long_ / length_penalty(3, 0.0)
    assert short / length_penalty(2, 2.0) < long_ / length_penalty(3, 2.0)
    for alpha in (0.0, 1.0, 2.0):  # beam search ranks by exactly this score
        best = run_beam(2, 1, alpha=alpha)[0]
        assert best.score == pytest.approx(best.log_prob / length_penalty(2, alpha))


def test_beam_step_is_topk_over_beam_times_vocab():
    scores = torch.tensor([[[0.0, -1.0, -5.0], [-0.5, -3.0, -0.25]]])
    top, beams, words = _beam_step(scores, 3)
    assert top.tolist() == [[0.0, -0.25, -0.5]]
    assert beams.tolist() == [[0, 1, 1]] and words.tolist() == [[0, 2, 0]]


def random_batch(n=5):
    torch.manual_seed(3)
    src = [torch.randint(4, 32, (int(torch.randint(2, 9, (1,))),)).tolist() for _ in range(n)]
    return collate(src, [[4]] * n)


@pytest.mark.parametrize("decoder", ["attention", "context"])
def test_beam_one_equals_greedy(decoder):
    model = tiny_model(decoder=decoder)
    batch = random_batch()
    greedy = greedy_search(model, batch.src_ids, batch.src_lengths, 1.5, 5)
    beam = beam_search(
        model, batch.src_ids, batch.src_lengths, beam=1, alpha=0.0, max_len_a=1.5, max_len_b=5
    )
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam]
    for g, b in zip(greedy, beam):
        assert g.log_prob == pytest.approx(b[0].log_prob, abs=1e-5)


@pytest.mark.parametrize("beam", [1, 4])
def test_batched_search_equals_one_sentence_at_a_time(beam):
    model = tiny_model()
    batch = random_batch()
    together = beam_search(model, batch.src_ids, batch.src_lengths, beam=beam, nbest=beam)
    for row in range(len(together)):
        length = int(batch.src_lengths[row])
        alone = beam_search(
            model,
            batch.src_ids[row : row + 1, :length],
            batch.src_lengths[row : row + 1],
            beam=beam,
            nbest=beam,
        )[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[row]]
        for a, t in zip(alone, together[row]):
            assert a.score == pytest.approx(t.score, abs=1e-6)
    greedy = greedy_search(model, batch.src_ids, batch.src_lengths)
    for row in range(len(greedy)):
        length = int(batch.src_lengths[row])
        alone = greedy_search(
            model, batch.src_ids[row : row + 1, :length], batch.src_lengths[row : row + 1]
        )[0]
        assert alone.tokens == greedy[row].tokens


def test_nbest_are_distinct_and_sorted():
    model = tiny_model()
    batch = random_batch(2)
    for hyps in beam_search(model, batch.src_ids, batch.src_lengths, beam=5, nbest=5):
        assert len(hyps) == 5
        assert len({tuple(h.tokens) for h in hyps}) == 5
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


class RepeatingModel(ScriptedModel):
    """After every word "a" is the likeliest; "b" second; EOS last."""

    TABLE = {
        BOS_ID: {4: 0.6, 5: 0.3, EOS_ID: 0.1},
        4: {4: 0.6, 5: 0.3, EOS_ID: 0.1},
        5: {4: 0.6, 5: 0.3, EOS_ID: 0.1},
        EOS_ID: {EOS_ID: 1.0},
    }


def _bigrams(tokens):
    return list(zip(tokens, tokens[1:]))


@pytest.mark.parametrize("beam", [1, 2])
def test_no_repeat_ngram_stops_a_runaway_repetition(beam):
    src = collate([[4] * 8], [[4]])  # a limit of 1.5 * 9 + 10 words

    def search(n):
        if beam == 1:
            return greedy_search(RepeatingModel(), src.src_ids, src.src_lengths, no_repeat_ngram=n)[
                0
            ]
        return beam_search(
            RepeatingModel(), src.src_ids, src.src_lengths, beam=2, no_repeat_ngram=n
        )[0][0]

    runaway = search(0)
    assert runaway.tokens[:5] == [4] * 5  # "a a a a a ..."
    guarded = search(2)
    assert len(set(_bigrams(guarded.tokens))) == len(_bigrams(guarded.tokens))
    assert len(guarded.tokens) < len(runaway.tokens)


def test_block_repeats_forbids_exactly_the_repeating_words():
    from seq2seq.search import block_repeats

    log_probs = torch.zeros(1, 6)
    block_repeats(log_probs, torch.tensor([[4, 5, 4]]), 2)  # "a b a": "b" would repeat "a b"
    assert torch.isinf(log_probs[0]).nonzero().flatten().tolist() == [5]


def test_block_top_k_equals_topk_on_long_rows():
    torch.manual_seed(0)
    scores = torch.randn(7, 5 * 8000)
    scores[0, 8000:] = float("-inf")  # the first step: one beam's words only
    scores[1, 3] = 100.0  # the best ones in one block
    scores[1, 4] = 99.0
    values, index = top_k(scores, 10)
    expected = scores.topk(10, dim=-1)
    assert torch.equal(values, expected.values) and torch.equal(index, expected.indices)


def test_block_top_k_falls_back_when_blocks_do_not_fit():
    scores = torch.randn(2, 6 * 37)  # not a multiple of the block size
    assert torch.equal(top_k(scores, 4)[1], scores.topk(4, dim=-1).indices)


@pytest.mark.parametrize("beam", [1, 4])
def test_a_shortlist_searches_as_the_model_with_other_words_forbidden(beam):
    model = tiny_model()
    batch = random_batch()
    columns = torch.tensor([UNK_ID, EOS_ID, *range(4, 32, 3)])
    settings = dict(max_len_a=1.5, max_len_b=5, no_repeat_ngram=2)

    def search(model, columns=None):
        src = (batch.src_ids, batch.src_lengths)
        if beam == 1:
            return [[h] for h in greedy_search(model, *src, **settings, columns=columns)]
        return beam_search(model, *src, beam=beam, nbest=beam, **settings, columns=columns)

    everything = torch.arange(32)
    for full, listed in zip(search(model), search(model, everything)):
        assert [h.tokens for h in full] == [h.tokens for h in listed]
    forbidding = tiny_model()  # the same weights; words outside the shortlist never win
    outside = torch.ones(32, dtype=torch.bool)
    outside[columns] = False
    with torch.no_grad():
        forbidding.output.bias[outside] = float("-inf")
    for reference, short in zip(search(forbidding), search(model, columns)):
        assert [h.tokens for h in reference] == [h.tokens for h in short]
        for r, s in zip(reference, short):
            assert r.score == pytest.approx(s.score, abs=1e-9)
            assert set(s.tokens) <= set(columns.tolist())


@pytest.mark.parametrize("beam", [1, 3])
def test_with_its_own_columns_a_sentence_translates_as_it_does_alone(beam):
    model = tiny_model()
    batch = random_batch()
    columns = torch.tensor([UNK_ID, EOS_ID, *range(4, 32)])
    allowed = torch.rand(len(batch.src_ids), len(columns)) < 0.5
    allowed[:, :2] = True  # UNK and EOS

    def search(rows):
        src = (batch.src_ids[rows], batch.src_lengths[rows])
        settings = dict(max_len_a=1.5, max_len_b=5, columns=columns, allowed=allowed[rows])
        if beam == 1:
            return [[h] for h in greedy_search(model, *src, **settings)]
        return beam_search(model, *src, beam=beam, nbest=beam, **settings)

    together = search(slice(None))
    for row, hypotheses in enumerate(together):
        alone = search(slice(row, row + 1))[0]
        assert [h.tokens for h in hypotheses] == [h.tokens for h in alone]
        assert hypotheses[0].score == pytest.approx(alone[0].score, abs=1e-5)
        for h in hypotheses:
            assert set(h.tokens) <= set(columns[allowed[row]].tolist())
    # alone, it is the search over its own columns
    first = (batch.src_ids[:1], batch.src_lengths[:1])
    settings = dict(max_len_a=1.5, max_len_b=5, columns=columns[allowed[0]])
    if beam == 1:
        plain = [[h] for h in greedy_search(model, *first, **settings)]
    else:
        plain = beam_search(model, *first, beam=beam, nbest=beam, **settings)
    assert [h.tokens for h in plain[0]] == [h.tokens for h in together[0]]


def test_an_ensemble_searches_a_shortlist_like_its_model():
    model = tiny_model()
    batch = random_batch()
    columns = torch.tensor([UNK_ID, EOS_ID, *range(4, 32, 2)])
    alone = beam_search(model, batch.src_ids, batch.src_lengths, beam=3, columns=columns)
    twice = beam_search(
        Ensemble([model, model]), batch.src_ids, batch.src_lengths, beam=3, columns=columns
    )
    for a, t in zip(alone, twice):
        assert [h.tokens for h in a] == [h.tokens for h in t]
        assert a[0].score == pytest.approx(t[0].score, abs=1e-9)
