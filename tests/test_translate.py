import pytest
import torch

from seq2seq import translate
from seq2seq.data import collate
from seq2seq.translate import MAX_SRC_CHARS, MAX_SRC_TOKENS, Translator
from seq2seq.unseen import drop_stop

LINES = ["der hund", "", "ein mann läuft im park auf dem gras", "die katze", "   ", "hund"]


@pytest.fixture(scope="module")
def translator(tiny_model_file):
    return Translator.from_file(tiny_model_file)


def test_order_and_empty_lines_survive_sorting(translator):
    one_by_one = [translator.translate([line], beam=1)[0].texts[0] for line in LINES]
    together = [t.texts[0] for t in translator.translate(LINES, beam=1)]
    assert together == one_by_one
    assert together[1] == "" and together[4] == ""


@pytest.mark.parametrize("beam", [1, 2])
def test_batch_size_does_not_change_the_output(translator, beam):
    big = translator.translate(LINES, beam=beam, batch_tokens=10_000)
    small = translator.translate(LINES, beam=beam, batch_tokens=8)
    assert [t.texts for t in big] == [t.texts for t in small]
    big_scores = [s for t in big for s in t.scores]
    assert big_scores == pytest.approx([s for t in small for s in t.scores], abs=1e-4)


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_in_parallel_maps_in_order_on_one_thread_each_and_restores_threads(two_threads):
    seen = translate.in_parallel(lambda x: (x * x, torch.get_num_threads()), list(range(7)))
    assert seen == [(x * x, 1) for x in range(7)]
    assert torch.get_num_threads() == 2
    with pytest.raises(ZeroDivisionError):
        translate.in_parallel(lambda x: 1 / x, [1, 0, 2])
    assert torch.get_num_threads() == 2
    assert list(translate.in_parallel(lambda x: torch.get_num_threads(), [5])) == [2]


@pytest.mark.parametrize("beam, batch_tokens", [(1, 8), (2, 8), (2, 10_000)])
def test_batches_searched_side_by_side_give_the_one_by_one_output(
    translator, beam, batch_tokens, two_threads, monkeypatch
):
    lines = LINES * 6  # 24 sentences: a share of 12 for each thread
    side_by_side = translator.translate(lines, beam=beam, nbest=beam, batch_tokens=batch_tokens)
    monkeypatch.setattr(translate, "in_parallel", lambda function, items: map(function, items))
    monkeypatch.setattr(
        translate, "split_by_length", lambda order, lengths, parts, step_cost: [order]
    )
    in_turn = translator.translate(lines, beam=beam, nbest=beam, batch_tokens=batch_tokens)
    assert [t.texts for t in side_by_side] == [t.texts for t in in_turn]
    scores = [s for t in side_by_side for s in t.scores]
    assert scores == pytest.approx([s for t in in_turn for s in t.scores], abs=1e-6)


def test_pairs_scored_side_by_side_score_as_in_turn(translator, two_threads, monkeypatch):
    src = translator.encode_sources(["der hund", "ein mann läuft im park", "katze"] * 8)
    tgt = translator.tgt.encode(["the dog", "a man runs in-the park", "cat"] * 8)
    side_by_side = translator.score_ids(src, tgt, batch_tokens=30)
    monkeypatch.setattr(translate, "in_parallel", lambda function, items: map(function, items))
    monkeypatch.setattr(
        translate, "split_by_length", lambda order, lengths, parts, step_cost: [order]
    )
    assert side_by_side == pytest.approx(translator.score_ids(src, tgt, batch_tokens=30), abs=1e-5)


def test_stream_reads_in_chunks_and_keeps_order(translator, monkeypatch):
    monkeypatch.setattr(translate, "CHUNK_LINES", 2)
    releases = []  # freed memory goes back to the system every CHUNK_LINES lines
    monkeypatch.setattr(translate, "release_free_memory", lambda: releases.append(1))
    expected = [t.texts[0] for t in translator.translate(LINES, beam=1)]
    for chunk_lines in (2, 1):  # 1: each line as soon as it is read
        releases.clear()
        streamed = translator.translate_stream(iter(LINES), beam=1, chunk_lines=chunk_lines)
        assert [t.texts[0] for t in streamed] == expected
        assert len(releases) == len(LINES) // 2


def test_nbest_is_sorted_and_the_best_first(translator):
    result = translator.translate(["der hund läuft"], beam=2, nbest=2)[0]
    assert 1 <= len(result.texts) <= 2 and len(set(result.texts)) == len(result.texts)
    assert result.scores == sorted(result.scores, reverse=True)
    assert result.texts[0] == translator.translate(["der hund läuft"], beam=2)[0].texts[0]


def test_long_input_is_cut_before_tokenizing(translator, caplog):
    ids = translator.encode_sources(["hund " * 10_000, "x" * (3 * MAX_SRC_CHARS)])
    assert [len(seq) for seq in ids] == [MAX_SRC_TOKENS, MAX_SRC_TOKENS]
    assert caplog.text.count("cut to its first") == 2


def test_score_ids_is_forced_decoding_in_input_order(translator):
    src = translator.encode_sources(["der hund", "ein mann läuft im park", "katze"])
    tgt = translator.tgt.encode(["the dog", "a man runs in-the park", "cat"])
    scores = translator.score_ids(src, tgt, batch_tokens=12)
    for s, t, value in zip(src, tgt, scores):
        alone = translator.score_ids([s], [t], batch_tokens=10_000)[0]
        assert value == pytest.approx(alone, abs=1e-4)
    assert all(v < 0 for v in scores)
    batch = collate(src[:1], tgt[:1])
    with torch.no_grad():  # the model's own forced decoding of one pair
        total, _ = translator.model.score(batch.src_ids, batch.src_lengths, batch.tgt_out)
    assert scores[0] == pytest.approx(float(total[0]), abs=1e-4)


def test_a_paragraph_line_gives_one_line_of_its_sentences(translator):
    paragraph = "Der hund läuft. Die katze sitzt im park! Ein mann spielt?"
    sentences = ["Der hund läuft.", "Die katze sitzt im park!", "Ein mann spielt?"]
    assert translate.split_sentences(paragraph, "de") == sentences
    alone = [t.texts[0] for t in translator.translate(sentences, beam=1)]
    result = translator.translate_lines(["  " + paragraph + " ", "", "   "], beam=1)
    assert [r.texts[0] for r in result] == ["  " + " ".join(alone) + " ", "", ""]


def test_a_text_keeps_its_line_breaks(translator):
    # a server's q may be a whole text area: its lines stay lines, blank ones too
    lines = ["Der hund läuft. Die katze", "", " ein mann spielt"]
    alone = [r.texts for r in translator.translate_lines(lines, beam=2, nbest=2)]
    (result,) = translator.translate_lines(["\n".join(lines)], beam=2, nbest=2)
    assert result.texts[0] == "\n".join(texts[0] for texts in alone)
    assert result.texts[-1] == "\n".join(texts[-1] for texts in alone)


def test_symbols_the_model_never_saw_go_around_its_translation(translator):
    words = [r.texts for r in translator.translate(["der hund", "ein mann"], beam=2, nbest=2)]
    results = translator.translate(["der hund 😀", "😀 ein 👍 mann", "😀"], beam=2, nbest=2)
    assert [r.texts for r in results] == [
        [text + " 😀" for text in words[0]],
        ["😀 " + text + " 👍" for text in words[1]],
        ["😀"],
    ]


def test_a_text_without_final_punctuation_is_searched_with_a_full_stop(translator):
    with_stop = translator.translate(["der hund läuft."], beam=2, nbest=2)[0]
    typed = translator.translate(["der hund läuft"], beam=2, nbest=2)[0]
    expected = [drop_stop(text) for text in with_stop.texts]
    assert typed.texts == list(dict.fromkeys(expected))
    assert typed.scores[0] == with_stop.scores[0]


def test_a_model_of_lower_case_text_translates_any_case_alike(translator):
    assert not translator._cased  # the tiny corpus is in lower case
    lower, typed = translator.translate(["der hund läuft", "Der Hund läuft"], beam=2)
    assert typed.texts == lower.texts


def test_a_thousand_lines_give_a_thousand_lines(translator):
    lines = ["der hund. die katze.", "", "  ein mann läuft im park  ", "x. y. z.", "\t"] * 200
    out = list(translator.translate_stream(iter(lines), beam=1))
    assert len(out) == 1000
    assert [r.texts[0] == "" for r in out] == [line.strip() == "" for line in lines]


def test_the_shipped_model_translates_a_pasted_paragraph():
    from pathlib import Path

    model = Path(__file__).parents[1] / "models" / "multi30k-de-en.pt"
    shipped = Translator.from_file(model)
    text = "Ein Hund läuft über die Wiese. Zwei Kinder spielen im Schnee. Die Frau singt."
    (line,) = [r.texts[0] for r in shipped.translate_lines([text], beam=1)]
    assert len(translate.split_sentences(line, "en")) == 3


def test_nbest_entries_that_read_the_same_are_merged(translator, monkeypatch):
    monkeypatch.setattr(translator.tgt, "decode", lambda ids: ["same"] * len(ids))
    result = translator.translate(["der hund läuft"], beam=2, nbest=2)[0]
    assert result.texts == ["same"]


def test_an_ensemble_of_one_model_twice_equals_the_model(tiny_model_file, translator):
    ensemble = Translator.from_files([tiny_model_file, tiny_model_file])
    for beam in (1, 2):
        alone = translator.translate(LINES, beam=beam, nbest=2 if beam > 1 else 1)
        both = ensemble.translate(LINES, beam=beam, nbest=2 if beam > 1 else 1)
        assert [t.texts for t in both] == [t.texts for t in alone]
        flat = [s for t in both for s in t.scores]
        assert flat == pytest.approx([s for t in alone for s in t.scores], abs=1e-5)
    src, tgt = translator.encode_sources(["der hund"]), translator.tgt.encode(["the dog"])
    assert ensemble.score_ids(src, tgt, 100) == pytest.approx(translator.score_ids(src, tgt, 100))


def test_an_ensemble_averages_log_probabilities(tiny_model_file, tmp_path):
    payload = torch.load(tiny_model_file, weights_only=True)
    payload["state_dict"] = {
        k: v * 0.5 if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    torch.save(payload, tmp_path / "half.pt")
    a, b = Translator.from_file(tiny_model_file), Translator.from_file(tmp_path / "half.pt")
    ensemble = Translator.from_files([tiny_model_file, tmp_path / "half.pt"])
    src, tgt = a.encode_sources(["der hund"]), a.tgt.encode(["the dog"])
    mean = (a.score_ids(src, tgt, 100)[0] + b.score_ids(src, tgt, 100)[0]) / 2
    assert ensemble.score_ids(src, tgt, 100)[0] == pytest.approx(mean, abs=1e-5)


def test_an_ensemble_needs_the_same_vocabularies(tiny_model_file, tmp_path):
    from seq2seq.checkpoint import CheckpointError

    payload = torch.load(tiny_model_file, weights_only=True)
    payload["tokenizers"]["tgt"] = payload["tokenizers"]["src"]
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="tgt vocabulary differs"):
        Translator.from_files([tiny_model_file, tmp_path / "other.pt"])
