"""The CUDA path (cuDNN GRU, autocast, GradScaler) against the CPU; skipped without a GPU.

Run on a machine with one: `python -m pytest -m gpu tests/test_cuda.py`.
"""

import json
from pathlib import Path

import pytest
import torch
from helpers import SHARED_DATA, tiny_model
from torch.testing import assert_close

from seq2seq.cells import CELL_NAMES, make_recurrent_layer
from seq2seq.config import load_config
from seq2seq.data import collate, read_lines
from seq2seq.train import Trainer
from seq2seq.translate import Translator

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
DEFAULT_MODEL = Path(__file__).parents[1] / "models" / "de-en.pt"


def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.cpu() for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_every_cell_on_cuda_equals_the_cpu(cell, float64):
    torch.manual_seed(0)
    layer = make_recurrent_layer(cell, 8, 16, layers=2, bidirectional=True, dropout=0.0)
    x, lengths = torch.randn(5, 7, 8), torch.tensor([7, 3, 5, 1, 6])
    results = []
    for device in ("cpu", "cuda"):
        layer.zero_grad()
        layer.to(device)
        outputs, finals = layer(x.to(device), lengths)
        (outputs.sum() + finals.sum()).backward()
        results.append((outputs.cpu(), finals.cpu(), gradients(layer)))
    (cpu_out, cpu_finals, cpu_grads), (gpu_out, gpu_finals, gpu_grads) = results
    assert_close(gpu_out, cpu_out)
    assert_close(gpu_finals, cpu_finals)
    assert cpu_grads.keys() == gpu_grads.keys()
    for name, grad in cpu_grads.items():
        assert_close(gpu_grads[name], grad, msg=name)


@pytest.mark.parametrize("encoder", ["rnn", "grconv"])
@pytest.mark.parametrize("decoder", ["attention", "context"])
def test_every_model_on_cuda_equals_the_cpu(encoder, decoder, float64):
    model = tiny_model(encoder=encoder, decoder=decoder).train()
    batch = collate([[5, 6, 7, 8], [9, 10], [11, 12, 13]], [[14, 15, 16], [17, 18, 19, 20], [21]])
    results = []
    for device in ("cpu", "cuda"):
        model.zero_grad()
        model.to(device)
        loss = model(batch.to(device), 0.1)
        loss.backward()
        results.append((loss.cpu(), gradients(model)))
    (cpu_loss, cpu_grads), (gpu_loss, gpu_grads) = results
    assert_close(gpu_loss, cpu_loss)
    for name, grad in cpu_grads.items():
        assert_close(gpu_grads[name], grad, msg=name)


def dev_losses(run: Path) -> list[float]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["type"] == "valid"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_learns_in_every_precision(tiny_config, tmp_path, precision):
    overrides = [f"data.dir={tiny_config.data.dir}", "train.device=cuda", "train.max_epochs=20"]
    config = load_config("tiny", [*overrides, f"train.precision={precision}", "train.lr=0.01"])
    model_path = Trainer.build(config, tmp_path).run()
    losses = dev_losses(tmp_path)
    print(precision, losses)
    assert losses[-1] < 0.5 * losses[0], losses
    # the model file runs on the CPU
    translator = Translator.from_file(model_path)
    assert translator.translate(["der hund läuft im park"])[0].texts[0]


def test_resume_on_cuda_is_bit_identical(tiny_config, tmp_path, monkeypatch):
    from test_train import assert_same_parameters, crash_and_resume, last_checkpoint

    overrides = [
        f"data.dir={tiny_config.data.dir}",
        "train.device=cuda",
        "train.max_steps=24",
        "train.checkpoint_every=5",
        "model.dropout=0.3",
    ]
    config = load_config("tiny", overrides)
    Trainer.build(config, tmp_path / "straight").run()
    Trainer.build(config, tmp_path / "again").run()
    straight, again = last_checkpoint(tmp_path / "straight"), last_checkpoint(tmp_path / "again")
    assert_same_parameters(straight["state_dict"], again["state_dict"])  # deterministic at all
    resumed = crash_and_resume(config, tmp_path / "crashed", monkeypatch, 13)
    assert_same_parameters(straight["state_dict"], resumed["state_dict"])


def test_the_default_model_translates_on_cuda_as_on_the_cpu():
    path = SHARED_DATA / "multi30k" / "test_2016_flickr.de.gz"
    if not path.is_file():
        pytest.skip(f"{path}: not found (set SEQ2SEQ_DATA)")
    sentences = list(read_lines(path))[:200]
    cpu = [t.texts[0] for t in Translator.from_file(DEFAULT_MODEL).translate(sentences)]
    for dtype in ("fp32", "bf16"):
        translator = Translator.from_file(DEFAULT_MODEL, device="cuda", dtype=dtype)
        gpu = [t.texts[0] for t in translator.translate(sentences, nbest=2)]
        same = sum(a == b for a, b in zip(cpu, gpu))
        print(f"{dtype} on cuda: {same} of {len(cpu)} translations as on the cpu")
        # rounding differs (cuDNN, TF32 in cuDNN, bf16): a few beams may part ways
        assert same >= (0.95 if dtype == "fp32" else 0.85) * len(cpu)


def test_a_run_on_cuda_goes_on_without_a_gpu(tiny_config, tmp_path):
    from test_train import last_checkpoint

    def config(device: str, steps: int):
        overrides = [f"train.device={device}", f"train.max_steps={steps}"]
        return load_config("tiny", [f"data.dir={tiny_config.data.dir}", *overrides])

    model_path = Trainer.build(config("cuda", 3), tmp_path).run()
    state = torch.load(model_path, weights_only=True)["state_dict"]  # no map_location
    assert all(t.device.type == "cpu" for t in state.values())
    Trainer.build(config("cpu", 6), tmp_path, resume=True).run()
    assert last_checkpoint(tmp_path)["progress"]["step"] == 6
