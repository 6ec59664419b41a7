import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seq2seq import onednn
from seq2seq.cells import FusedGRU
from seq2seq.decoders import AttentionDecoder
from seq2seq.encoders import EncoderOutput
from seq2seq.onednn import ROW_BLOCK, PackedLinear, can_pack
from seq2seq.packed import PackedGRU, pack_linear_layers

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")
DTYPES = [
    torch.float32,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(not can_pack(torch.bfloat16), reason="no oneDNN bf16 here"),
    ),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_a_packed_layer_computes_the_linear_layer(bias, dtype):
    torch.manual_seed(0)
    layer = nn.Linear(32, 48, bias=bias).to(dtype)
    packed = PackedLinear(layer.weight, layer.bias)
    with torch.inference_mode():
        for shape in [(5, 32), (3, 7, 32), (0, 32)]:
            x = torch.randn(shape).to(dtype)
            assert_same(packed(x), layer(x))
        x = torch.randn(4, 32)  # float32 in, as autocast would hand it on
        assert_same(packed(x), F.linear(x.to(dtype), layer.weight, layer.bias))


def assert_same(ours, theirs):
    if ours.dtype == torch.bfloat16:
        assert ours.equal(theirs)
    else:  # oneDNN and MKL add up in different orders
        assert ours.allclose(theirs, atol=1e-5)


def test_float32_is_packed_on_amd_cpus_only(monkeypatch):
    for vendor, packs in [("AuthenticAMD", True), ("GenuineIntel", False), ("", False)]:
        monkeypatch.setattr(onednn, "cpu_vendor", lambda vendor=vendor: vendor)
        assert can_pack(torch.float32) is packs
    assert not can_pack(torch.float16)


def test_pack_linear_layers_replaces_every_linear_layer_and_keeps_its_weights():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.Tanh(), nn.Linear(8, 2))).bfloat16()
    weights = [model[0].weight, model[1][1].weight]
    pack_linear_layers(model)
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert model[0].weight.equal(weights[0]) and model[1][1].weight.equal(weights[1])


@pytest.mark.parametrize("layers, bidirectional", [(1, True), (2, True), (2, False)])
def test_a_packed_gru_runs_the_sentences_as_torch_gru_does(layers, bidirectional):
    torch.manual_seed(0)
    fused = FusedGRU(8, 16, layers, bidirectional, dropout=0.0).eval()
    x, lengths = torch.randn(5, 7, 8), torch.tensor([7, 3, 5, 1, 6])
    with torch.inference_mode():
        outputs, finals = PackedGRU(fused)(x, lengths)
        expected_outputs, expected_finals = fused(x, lengths)
    assert_same(outputs, expected_outputs)  # zeros after each sentence's end too
    assert_same(finals, expected_finals)


def test_pack_linear_layers_packs_a_fused_gru():
    model = nn.Sequential(FusedGRU(4, 8, 1, True, 0.0))
    pack_linear_layers(model)
    assert isinstance(model[0], PackedGRU)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_packed_translator_searches_and_scores_as_the_unpacked_one(
    tiny_model_file, tiny_prepared, tmp_path, monkeypatch, dtype
):
    from seq2seq.cli import main
    from seq2seq.translate import Translator

    short = tmp_path / "short.pt"
    train = [str(tiny_prepared / f"train.{lang}") for lang in ("de", "en")]
    assert main(["export", str(tiny_model_file), str(short), "--shortlist", *train]) == 0
    texts = ["der hund läuft im park", "ein mann", "zwei frauen sitzen"]
    for path in (tiny_model_file, short):
        name = "bf16" if dtype == torch.bfloat16 else "fp32"
        monkeypatch.setattr("seq2seq.translate.can_pack", lambda weights: weights == dtype)
        packed = Translator.from_file(path, dtype=name)
        assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
        monkeypatch.setattr("seq2seq.translate.can_pack", lambda weights: False)
        plain = Translator.from_file(path, dtype=name)
        monkeypatch.undo()
        assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
        for beam in (1, 3):
            ours, theirs = packed.translate(texts, beam=beam), plain.translate(texts, beam=beam)
            assert [t.texts for t in ours] == [t.texts for t in theirs]
            assert [t.scores[0] for t in ours] == pytest.approx([t.scores[0] for t in theirs])
        src, tgt = packed.encode_sources(texts), packed.tgt.encode(["the dog", "a man", "two"])
        assert packed.score_ids(src, tgt, 100) == pytest.approx(plain.score_ids(src, tgt, 100))


def test_a_packed_decoder_runs_few_product_shapes(monkeypatch):
    # oneDNN builds a kernel per shape (0.6 ms each): rows of whole sentences are padded
    # to ROW_BLOCK, and attention's energies, B x beams x S rows, never go through a packed layer
    torch.manual_seed(0)
    decoder = AttentionDecoder(5, 6, 6, 3, 7, 4, dropout=0.0).eval()
    encoded = EncoderOutput(
        torch.randn(2, 9, 6), torch.ones(2, 9, dtype=torch.bool), torch.randn(2, 6)
    )
    with torch.inference_mode():
        expected, _ = decoder.step(
            decoder.word_inputs(torch.ones(2, 5)), decoder.init_state(encoded)
        )
        pack_linear_layers(decoder)
        rows = []
        forward = PackedLinear.forward
        monkeypatch.setattr(
            PackedLinear,
            "forward",
            lambda self, x: rows.append((self, x.flatten(0, -2).size(0))) or forward(self, x),
        )
        state = decoder.init_state(encoded)
        features, _ = decoder.step(decoder.word_inputs(torch.ones(2, 5)), state)
    assert_same(features, expected)
    memory_rows = [
        n for layer, n in rows if layer in (decoder.key, decoder.input_context, decoder.out_context)
    ]
    assert memory_rows and all(n % ROW_BLOCK == 0 for n in memory_rows)
    assert all(layer is not decoder.energy for layer, _ in rows)
