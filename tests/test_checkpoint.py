import pickle

import pytest
import torch

from seq2seq.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    export_model,
    load_file,
    model_payload,
    save_file,
)
from seq2seq.data import collate_sources


def payload():
    return model_payload({"model": {}}, {"w": torch.ones(2)}, b"src", b"tgt", {"bleu": 1.0})


def test_round_trip_and_16_bit(tmp_path):
    save_file(payload(), tmp_path / "m.pt")
    loaded = load_file(tmp_path / "m.pt")
    assert loaded["tokenizers"] == {"src": b"src", "tgt": b"tgt"}
    assert loaded["format_version"] == FORMAT_VERSION and loaded["metrics"] == {"bleu": 1.0}
    small = model_payload(
        {},
        {"w": torch.ones(2), "i": torch.ones(2, dtype=torch.long)},
        b"",
        b"",
        {},
        dtype=torch.float16,
    )
    assert small["state_dict"]["w"].dtype == torch.float16
    assert small["state_dict"]["i"].dtype == torch.long


class Evil:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"not a model at all"), "not a seq2seq model file (one"),
        (lambda p: p.write_bytes(_saved_bytes(p)[:300]), "truncated or corrupt"),
        (lambda p: torch.save({"weights": torch.ones(1)}, p), "not a seq2seq model file"),
        (lambda p: torch.save([1, 2], p), "not a seq2seq model file"),
        (
            lambda p: torch.save({**payload(), "format_version": 99}, p),
            "model file format 99, this seq2seq reads format 1",
        ),
        (lambda p: p.write_bytes(pickle.dumps(Evil())), "not a seq2seq model file"),
        (lambda p: torch.save({"kind": "model", "x": Evil()}, p), "refused, the file holds"),
    ],
    ids=["garbage", "truncated", "other-dict", "list", "version", "pickle", "code"],
)
def test_refused_files_get_one_line(tmp_path, make, message, capsys):
    path = tmp_path / "m.pt"
    make(path)
    with pytest.raises(CheckpointError) as error:
        load_file(path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "this ran" not in capsys.readouterr().out


def _saved_bytes(path):
    save_file(payload(), path)
    return path.read_bytes()


def test_missing_and_wrong_kind(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load_file(tmp_path / "nope.pt")
    save_file(payload(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_file(tmp_path / "m.pt", kind="checkpoint")


def test_crash_during_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_file(payload(), path)

    def crash(obj, f):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_file({**payload(), "metrics": {"bleu": 2.0}}, path)
    monkeypatch.undo()
    assert load_file(path)["metrics"] == {"bleu": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_export_half_keeps_outputs_close(tiny_model_file, tmp_path):
    from seq2seq.translate import Translator

    export_model(tiny_model_file, tmp_path / "half.pt", half=True, metrics={"test_bleu": 1.5})
    exported = load_file(tmp_path / "half.pt")
    assert exported["metrics"]["test_bleu"] == 1.5
    assert exported["state_dict"]["output.bias"].dtype == torch.float16
    full, half = Translator.from_file(tiny_model_file), Translator.from_file(tmp_path / "half.pt")
    one, other = half.translate(["der hund läuft"])[0], full.translate(["der hund läuft"])[0]
    assert one.texts == other.texts
    assert one.scores[0] == pytest.approx(other.scores[0], abs=1e-3)
    assert (tmp_path / "half.pt").stat().st_size < tiny_model_file.stat().st_size


def _first_weight(payload):
    return next(k for k, v in payload["state_dict"].items() if v.is_floating_point())


def _damage(payload, how):
    state = payload["state_dict"]
    if how in ("config", "tokenizers", "state_dict"):
        del payload[how]
    elif how == "shape":
        state[_first_weight(payload)] = state[_first_weight(payload)][:1]
    elif how == "missing-weight":
        del state[_first_weight(payload)]
    elif how == "tokenizer-bytes":
        payload["tokenizers"]["src"] = b"not a sentencepiece model"
    elif how == "config-mismatch":
        payload["config"]["model"]["hidden_size"] *= 2
    elif how == "bad-config":
        payload["config"]["model"]["cell"] = "transformer"
    elif how == "nan":
        state[_first_weight(payload)] = state[_first_weight(payload)] * float("nan")
    elif how == "shortlist":
        payload["shortlist"] = {"translations": torch.zeros(3, 2, dtype=torch.int32)}


@pytest.mark.parametrize(
    "how, message",
    [
        ("config", "no config"),
        ("tokenizers", "no tokenizers"),
        ("state_dict", "no state_dict"),
        ("shape", "weights do not match its config"),
        ("missing-weight", "weights do not match its config"),
        ("tokenizer-bytes", "tokenizers cannot be read"),
        ("config-mismatch", "weights do not match its config"),
        ("bad-config", "config is not valid"),
        ("nan", "NaN or infinite"),
        ("shortlist", "shortlist does not fit"),
    ],
)
def test_damaged_model_files_get_one_line(tiny_model_file, tmp_path, how, message, capsys):
    from seq2seq.cli import main

    payload = torch.load(tiny_model_file, weights_only=True)
    _damage(payload, how)
    path = tmp_path / "m.pt"
    torch.save(payload, path)
    assert main(["translate", "-m", str(path), "der hund"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_a_run_folder_stands_for_its_model(tiny_model_file):
    assert load_file(tiny_model_file.parent)["kind"] == "model"


def test_average_is_the_mean_and_loads_safely(tiny_prepared, tmp_path):
    from seq2seq.cli import main
    from seq2seq.translate import Translator

    run = tmp_path / "run"
    argv = ["train", "tiny", "--run-dir", str(run), "--set", f"data.dir={tiny_prepared}"]
    extra = ["train.max_steps=6", "train.checkpoint_every=2", "train.keep_checkpoints=3"]
    assert main(argv + [x for e in extra for x in ("--set", e)]) == 0
    out = tmp_path / "avg.pt"
    assert main(["average", str(run), "--last", "3", "-o", str(out)]) == 0
    checkpoints = sorted((run / "checkpoints").glob("step*.pt"))
    states = [load_file(p)["state_dict"] for p in checkpoints]
    averaged = load_file(out)  # weights_only loading
    assert averaged["kind"] == "model" and len(averaged["metrics"]["averaged"]) == 3
    for key, value in averaged["state_dict"].items():
        if value.is_floating_point():
            mean = sum(s[key].double() for s in states) / 3
            torch.testing.assert_close(value.double(), mean, rtol=1e-6, atol=1e-7)
    Translator.from_file(out).translate(["der hund"])
    assert main(["average", str(run), "--last", "4", "-o", str(tmp_path / "x.pt")]) == 1


def test_average_refuses_other_configs(tiny_model_file, tmp_path):
    from seq2seq.checkpoint import average_models

    other = torch.load(tiny_model_file, weights_only=True)
    other["config"]["model"]["dropout"] = 0.5
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="another config"):
        average_models([tiny_model_file, tmp_path / "other.pt"])
    with pytest.raises(CheckpointError, match="at least two"):
        average_models([tiny_model_file])


def test_int8_export_round_trips_and_translates(tiny_model_file, tmp_path, capsys):
    from seq2seq.checkpoint import dequantize_matrices, quantize_matrices
    from seq2seq.cli import main
    from seq2seq.translate import Translator

    state = load_file(tiny_model_file)["state_dict"]
    back = dequantize_matrices(quantize_matrices(state))
    for key, value in state.items():
        if value.is_floating_point() and value.dim() == 2:
            step = value.abs().amax(dim=1, keepdim=True) / 127
            assert ((back[key] - value).abs() <= step / 2 + 1e-7).all()
    out = tmp_path / "int8.pt"
    assert main(["export", str(tiny_model_file), str(out), "--int8"]) == 0
    payload = load_file(out)  # weights_only loading
    assert payload["int8"] and any(v.dtype == torch.int8 for v in payload["state_dict"].values())
    quantized = Translator.from_file(out)
    assert any("quantized" in type(m).__module__ for m in quantized.model.modules())
    assert len(quantized.translate(["der hund", "ein mann"], beam=2)) == 2
    assert main(["translate", "-m", str(out), "--dtype", "bf16", "der hund"]) == 1
    assert main(["export", str(out), str(tmp_path / "again.pt"), "--int8"]) == 1


def test_bf16_search_is_close_to_fp32(tiny_model_file):
    from seq2seq.translate import Translator

    fp32 = Translator.from_file(tiny_model_file)
    bf16 = Translator.from_file(tiny_model_file, dtype="bf16")
    src, tgt = fp32.encode_sources(["der hund läuft"]), fp32.tgt.encode(["the dog runs"])
    assert bf16.score_ids(src, tgt, 100)[0] == pytest.approx(
        fp32.score_ids(src, tgt, 100)[0], abs=0.2
    )
    assert len(bf16.translate(["der hund"], beam=2)[0].texts[0]) > 0


def test_a_shortlist_export_round_trips_and_searches_within_it(
    tiny_model_file, tiny_prepared, tmp_path, capsys
):
    from seq2seq.cli import main
    from seq2seq.translate import Translator

    out = tmp_path / "short.pt"
    train = [str(tiny_prepared / f"train.{lang}") for lang in ("de", "en")]
    assert main(["export", str(tiny_model_file), str(out), "--shortlist", *train]) == 0
    stored = load_file(out)["shortlist"]  # weights_only loading
    assert stored["translations"].dtype == torch.int32
    translator = Translator.from_file(out)
    src_ids, _ = collate_sources(translator.encode_sources(["der hund läuft im park"]))
    columns = set(translator.shortlist.restrict(src_ids)[0].tolist())
    for beam in (1, 3):
        for translation in translator.translate(["der hund läuft im park"], beam=beam):
            assert set(translation.tokens) <= columns
    sentences = ["der hund läuft im park", "eine frau", "ein mann läuft", "der ball"]
    together = translator.translate(sentences, beam=3)
    assert [t.texts for t in together] == [
        translator.translate([s], beam=3)[0].texts for s in sentences
    ]
    capsys.readouterr()
    assert main(["translate", "-m", str(out), "--no-shortlist", "der hund"]) == 0
    assert capsys.readouterr().out.strip()
    int8 = tmp_path / "short-int8.pt"  # a later export keeps the shortlist
    assert main(["export", str(out), str(int8), "--int8"]) == 0
    assert load_file(int8)["shortlist"]["frequent"].equal(stored["frequent"])
    assert Translator.from_file(int8).translate(["der hund"], beam=2)[0].texts[0]
    assert (
        main(["export", str(out), str(tmp_path / "x.pt"), "--shortlist", train[0], "nofile"]) == 1
    )
    assert not (tmp_path / "x.pt").exists()
    before = out.read_bytes()
    assert main(["export", str(out), str(out), "--int8"]) == 1  # never over its own input
    assert "is the model file" in capsys.readouterr().err and out.read_bytes() == before


def test_a_shortlist_too_large_for_memory_is_refused_in_one_line(
    tiny_model_file, tiny_prepared, tmp_path, capsys, monkeypatch
):
    from seq2seq.cli import main

    monkeypatch.setattr("seq2seq.shortlist.MAX_TABLE", 1000)
    train = [str(tiny_prepared / f"train.{lang}") for lang in ("de", "en")]
    out = tmp_path / "short.pt"
    assert main(["export", str(tiny_model_file), str(out), "--shortlist", *train]) == 1
    err = capsys.readouterr().err.strip()
    assert "p(e|f) table" in err and "\n" not in err and not out.exists()
