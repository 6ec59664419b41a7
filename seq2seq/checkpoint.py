"""The model file: saved atomically, loaded safely.

A model file is a plain dict of tensors and plain types (docs/design.md, "The
model file"), read with `torch.load(weights_only=True)` so that loading can
never run code. A training checkpoint is the same dict plus the optimiser,
scheduler, RNG and data-order state.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from seq2seq.data import read_parallel
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_path
from seq2seq.shortlist import build_shortlist
from seq2seq.tokenizer import Tokenizer

FORMAT_VERSION = 1
KINDS = ("model", "checkpoint")


class CheckpointError(Seq2SeqError):
    """A model file cannot be used; the message says why in one line."""


def save_file(payload: dict[str, Any], path: str | Path) -> None:
    """Write `payload` to a temporary name, flush to disk, then rename.

    A crash at any point leaves either the old file or the new one under
    `path`, never a half-written one.
    """
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())


def load_file(path: str | Path, kind: str = "model") -> dict[str, Any]:
    """Read and check a model file (`kind="model"`) or training checkpoint.

    A checkpoint is also accepted where a model is asked for (it holds one).

    Raises:
        CheckpointError: missing, truncated or corrupt, not a seq2seq file,
            another format version, or a model where a checkpoint is needed.
    """
    path = Path(path)
    if path.is_dir() and (path / "model.pt").is_file():  # a training run folder
        path = path / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    with path.open("rb") as f:
        start = f.read(4)
    if start != b"PK\x03\x04":  # torch.save writes a zip archive
        raise CheckpointError(
            f"{path}: not a seq2seq model file (one that train, export or average wrote)"
        )
    if not zipfile.is_zipfile(path):  # its index is at the end: cut short
        raise CheckpointError(
            f"{path}: truncated or corrupt model file (not a complete torch file)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "Weights only load failed" in first:
            raise CheckpointError(
                f"{path}: refused, the file holds objects that could run code"
            ) from None
        raise CheckpointError(f"{path}: truncated or corrupt model file ({first[:120]})") from None
    if not isinstance(payload, dict) or payload.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: not a seq2seq model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: model file format {version}, this seq2seq reads format {FORMAT_VERSION}"
        )
    if kind == "checkpoint" and payload["kind"] != "checkpoint":
        raise CheckpointError(f"{path}: a final model file, not a training checkpoint")
    _check_parts(path, payload)
    return payload


def _check_parts(path: Path, payload: dict[str, Any]) -> None:
    """The parts every model file has, of the right types, with finite weights."""
    if not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{path}: damaged model file (no config)")
    tokenizers = payload.get("tokenizers")
    if not isinstance(tokenizers, dict) or not all(
        isinstance(tokenizers.get(side), bytes) for side in ("src", "tgt")
    ):
        raise CheckpointError(f"{path}: damaged model file (no tokenizers)")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: damaged model file (no state_dict)")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: weight {name} holds NaN or infinite values")


def model_payload(
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    src_tokenizer: bytes,
    tgt_tokenizer: bytes,
    metrics: dict[str, Any],
    dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """The self-contained model-file dict; `dtype` stores weights smaller."""
    if dtype is not None:
        state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    return {
        "format_version": FORMAT_VERSION,
        "kind": "model",
        "config": config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in state_dict.items()},
        "tokenizers": {"src": src_tokenizer, "tgt": tgt_tokenizer},
        "metrics": metrics,
    }


def export_model(
    path: str | Path,
    output: str | Path,
    half: bool,
    metrics: dict[str, Any],
    int8: bool = False,
    shortlist_text: tuple[Path, Path] | None = None,
) -> None:
    """Write the model part of a model file or checkpoint, optionally smaller.

    Args:
        path: a model file or training checkpoint.
        output: the new model file.
        half: store floating-point weights as float16 (loading makes them float32).
        metrics: merged into the file's metrics (e.g. test BLEU).
        int8: store every matrix as int8 with a scale per row; loading runs the
            Linear layers as dynamic int8 (`Translator.from_file`).
        shortlist_text: source and target files of parallel text to build a
            lexical shortlist from (shortlist.py); else the file's own shortlist
            (if any) is kept.
    """
    payload = load_file(path)
    if payload.get("int8"):
        raise CheckpointError(f"{path}: already an int8 file; export from the float model")
    exported = model_payload(
        payload["config"],
        payload["state_dict"],
        payload["tokenizers"]["src"],
        payload["tokenizers"]["tgt"],
        {**payload["metrics"], **metrics},
        dtype=torch.float16 if half else None,
    )
    if int8:
        exported.update(state_dict=quantize_matrices(exported["state_dict"]), int8=True)
    if shortlist_text:
        src, tgt = (Tokenizer(payload["tokenizers"][side]) for side in ("src", "tgt"))
        exported["shortlist"] = build_shortlist(read_parallel(*shortlist_text), src, tgt)
    elif "shortlist" in payload:
        exported["shortlist"] = payload["shortlist"]
    save_file(exported, output)


INT8_SCALE = ".int8_scale"  # the key suffix of a quantized matrix's row scales


def quantize_matrices(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every floating-point matrix as int8 with a float32 scale per row (symmetric)."""
    out = {}
    for key, value in state.items():
        if value.is_floating_point() and value.dim() == 2:
            scale = value.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127
            out[key] = (value.float() / scale).round().clamp(-127, 127).to(torch.int8)
            out[key + INT8_SCALE] = scale
        else:
            out[key] = value
    return out


def dequantize_matrices(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float32 matrices back from `quantize_matrices`."""
    return {
        key: value.float() * state[key + INT8_SCALE] if key + INT8_SCALE in state else value
        for key, value in state.items()
        if not key.endswith(INT8_SCALE)
    }


def average_models(paths: list[Path]) -> dict[str, Any]:
    """The model file whose parameters are the element-wise mean of the files' parameters.

    Raises:
        CheckpointError: fewer than two files, or files of different configs,
            tokenizers or parameter names.
    """
    if len(paths) < 2:
        raise CheckpointError("averaging needs at least two model files or checkpoints")
    first = load_file(paths[0])
    total = {k: v.double() for k, v in first["state_dict"].items() if v.is_floating_point()}
    for path in paths[1:]:
        payload = load_file(path)
        if payload["config"] != first["config"] or payload["tokenizers"] != first["tokenizers"]:
            raise CheckpointError(f"{path}: another config or tokenizer than {paths[0]}")
        if payload["state_dict"].keys() != first["state_dict"].keys():
            raise CheckpointError(f"{path}: other parameters than {paths[0]}")
        for key in total:
            total[key] += payload["state_dict"][key].double()
    state = {
        key: (total[key] / len(paths)).to(value.dtype) if key in total else value
        for key, value in first["state_dict"].items()
    }
    metrics = {**first["metrics"], "averaged": [Path(p).name for p in paths]}
    metrics.pop("dev_bleu", None)  # of one of the files, not of the average
    return model_payload(
        first["config"], state, first["tokenizers"]["src"], first["tokenizers"]["tgt"], metrics
    )
