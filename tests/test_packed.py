import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.packed import PackedLinear, can_pack, pack_linear_layers

pytestmark = pytest.mark.skipif(not can_pack(), reason="no oneDNN bf16 on this CPU or build")


@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_layer_computes_the_linear_layer(bias):
    torch.manual_seed(0)
    layer = nn.Linear(32, 48, bias=bias).bfloat16()
    packed = PackedLinear(layer.weight, layer.bias)
    with torch.inference_mode():
        for shape in [(5, 32), (3, 7, 32), (0, 32)]:
            x = torch.randn(shape).bfloat16()
            assert packed(x).equal(layer(x))
        x = torch.randn(4, 32)  # float32 in, as autocast would hand it on
        assert packed(x).equal(F.linear(x.bfloat16(), layer.weight, layer.bias))


def test_pack_linear_layers_replaces_every_linear_layer_and_keeps_its_weights():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Tanh(), nn.Linear(8, 2))).bfloat16()
    weights = [model[0].weight, model[1][1].weight]
    pack_linear_layers(model)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert model[0].weight.equal(weights[0]) and model[1][1].weight.equal(weights[1])


def test_a_packed_bf16_translator_searches_and_scores_as_the_unpacked_one(
    tiny_model_file, tiny_prepared, tmp_path, monkeypatch
):
    from seq2seq.cli import main
    from seq2seq.translate import Translator

    short = tmp_path / "short.pt"
    train = [str(tiny_prepared / f"train.{lang}") for lang in ("de", "en")]
    assert main(["export", str(tiny_model_file), str(short), "--shortlist", *train]) == 0
    texts = ["der hund läuft im park", "ein mann", "zwei frauen sitzen"]
    for path in (tiny_model_file, short):
        packed = Translator.from_file(path, dtype="bf16")
        assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
        monkeypatch.setattr("seq2seq.translate.can_pack", lambda: False)
        plain = Translator.from_file(path, dtype="bf16")
        monkeypatch.undo()
        assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
        for beam in (1, 3):
            ours, theirs = packed.translate(texts, beam=beam), plain.translate(texts, beam=beam)
            assert [t.texts for t in ours] == [t.texts for t in theirs]
            assert [t.scores[0] for t in ours] == pytest.approx([t.scores[0] for t in theirs])
        src, tgt = packed.encode_sources(texts), packed.tgt.encode(["the dog", "a man", "two"])
        assert packed.score_ids(src, tgt, 100) == pytest.approx(plain.score_ids(src, tgt, 100))
