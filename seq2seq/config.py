"""Settings as frozen dataclasses, read from and written to YAML.

Every experiment is one YAML file with four sections (data, model, train,
search). Unknown keys and bad values fail with one line that names the key
and what is allowed, before any work starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seq2seq.errors import Seq2SeqError


class ConfigError(Seq2SeqError):
    """A setting is unknown or has a value that is not allowed."""


def _choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata={"choices": (default, *choices)})


def _positive(default: float) -> Any:
    return field(default=default, metadata={"min": 0, "strict": True})


def _at_least(default: float, low: float) -> Any:
    return field(default=default, metadata={"min": low})


@dataclass(frozen=True)
class DataConfig:
    """Where the prepared corpus lives (the output of `seq2seq prepare`)."""

    dir: str = ""  # a folder `seq2seq prepare` wrote
    src: str = ""  # "": the source language the folder was prepared for
    tgt: str = ""  # "": its target language
    train: str = "train"
    valid: str = "val"
    test: str = "test"  # what `evaluate -m MODEL` scores by default
    max_len: int = _positive(100)  # tokens; longer training pairs are skipped


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; `build_model` in model.py turns this into modules."""

    encoder: str = _choice("rnn", "grconv")
    decoder: str = _choice("attention", "context")
    cell: str = _choice("gru_reset_after", "gru", "gru1", "gru2", "gru3", "tanh", "lstm")
    emb_size: int = _positive(256)
    hidden_size: int = _positive(256)
    layers: int = _positive(1)
    bidirectional: bool = True
    dropout: float = field(default=0.2, metadata={"min": 0, "max": 0.99})
    maxout_size: int = _positive(256)  # deep output size after pooling
    attention_size: int = _positive(256)
    tie_embeddings: bool = True  # needs maxout_size == emb_size


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, validation and checkpoint settings."""

    seed: int = 1
    optimizer: str = _choice("adam", "adadelta")
    lr: float = _positive(0.001)
    clip_norm: float = _at_least(1.0, 0)  # 0 turns clipping off
    # warmup_decay: warm-up, then inverse-sqrt decay; linear_decay: warm-up, then
    # linear decay to 0 at max_steps, or, without it, at the step that max_minutes
    # reaches at the speed of the warm-up (a run of known length or time)
    schedule: str = _choice("plateau", "constant", "warmup_decay", "linear_decay")
    warmup_steps: int = _at_least(1000, 0)
    plateau_factor: float = field(default=0.5, metadata={"min": 0, "max": 1})
    plateau_patience: int = _at_least(2, 0)
    label_smoothing: float = field(default=0.1, metadata={"min": 0, "max": 0.99})
    batch_tokens: int = _positive(4000)  # source + target tokens incl. padding
    accumulate: int = _positive(1)
    max_epochs: int = _positive(30)
    max_steps: int = _at_least(0, 0)  # 0: no step limit
    max_minutes: float = _at_least(0, 0)  # 0: no time limit
    valid_every: int = _positive(500)
    # also report dev scores every N training minutes (0: off); these do not pick
    # the model or drive the schedule, so a run stays the same on any machine
    valid_minutes: float = _at_least(0, 0)
    valid_sentences: int = _at_least(0, 0)  # 0: whole dev split
    patience: int = _at_least(8, 0)  # validations without gain; 0 never stops
    checkpoint_every: int = _positive(500)
    checkpoint_minutes: float = _positive(10)
    keep_checkpoints: int = _positive(2)
    precision: str = _choice("fp32", "bf16", "fp16")
    threads: int = _at_least(0, 0)  # 0: torch default
    device: str = "cpu"


@dataclass(frozen=True)
class SearchConfig:
    """Decoding settings used by validation, translate and evaluate."""

    beam: int = _positive(5)
    alpha: float = _at_least(1.0, 0)  # length-normalisation exponent
    max_len_a: float = _at_least(1.5, 0)  # max output length = a * src + b
    max_len_b: int = _at_least(10, 0)
    nbest: int = _positive(1)  # outputs per input line of `translate`
    no_repeat_ngram: int = _at_least(0, 0)  # never repeat an n-gram of this size (0: off)
    batch_tokens: int = _positive(6000)


@dataclass(frozen=True)
class Config:
    """One experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


_SECTION_TYPES = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "search": SearchConfig,
}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _check_value(section: str, f: dataclasses.Field, value: Any) -> Any:
    name = f"{section}.{f.name}"
    kind = _TYPES[f.type]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    if type(value) is not kind:
        raise ConfigError(f"{name}: expected {f.type}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{name}: {value!r} is not a finite number")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is not None and (value < low or (f.metadata.get("strict") and value == low)):
        bound = ">" if f.metadata.get("strict") else ">="
        raise ConfigError(f"{name}: {value!r} must be {bound} {low}")
    if high is not None and value > high:
        raise ConfigError(f"{name}: {value!r} must be <= {high}")
    return value


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a `Config`; missing keys take their defaults."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping of sections")
    sections = {}
    for section, values in raw.items():
        if section not in _SECTION_TYPES:
            raise ConfigError(f"unknown section {section!r}; allowed: {', '.join(_SECTION_TYPES)}")
        cls = _SECTION_TYPES[section]
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = values or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a mapping of keys")
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown key {section}.{key}; allowed: {', '.join(known)}")
        sections[section] = cls(
            **{k: _check_value(section, known[k], v) for k, v in values.items()}
        )
    config = Config(**sections)
    model = config.model
    if model.tie_embeddings and model.maxout_size != model.emb_size:
        raise ConfigError(
            "model.tie_embeddings needs model.maxout_size == model.emb_size "
            f"({model.maxout_size} != {model.emb_size})"
        )
    if config.train.schedule == "linear_decay" and not (
        config.train.max_steps or config.train.max_minutes
    ):
        raise ConfigError(
            "train.schedule=linear_decay needs train.max_steps or train.max_minutes "
            "(where the rate reaches 0)"
        )
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict, the form stored in model files and YAML."""
    return dataclasses.asdict(config)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` strings; values are parsed as YAML scalars."""
    if not isinstance(raw, dict):
        raise ConfigError("config: expected a mapping of sections, got a " + type(raw).__name__)
    for section, values in raw.items():
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
    raw = {k: dict(v or {}) for k, v in raw.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        try:
            raw.setdefault(section, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a YAML file (a path or a preset name) and apply overrides.

    A file may start from a preset (`preset: attention`): its sections are
    the preset's, with the keys the file sets replaced.
    """
    return config_from_dict(apply_overrides(_read_raw(path), list(overrides)))


def _read_raw(path: str | Path, depth: int = 0) -> dict[str, Any]:
    """The file's sections merged over those of the preset it names, if any."""
    if depth > 5:
        raise ConfigError(f"{path}: presets name each other in a circle")
    raw = _read_yaml(resolve_preset(path))
    if not isinstance(raw, dict) or "preset" not in raw:
        return raw
    raw = dict(raw)
    base = raw.pop("preset")
    if not isinstance(base, str):
        raise ConfigError(f"{path}: preset: expected a preset name, got {base!r}")
    merged = apply_overrides(_read_raw(base, depth + 1), [])
    for section, values in apply_overrides(raw, []).items():
        merged[section] = {**merged.get(section, {}), **values}
    return merged


def _read_yaml(path: Path) -> Any:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise ConfigError(f"{path}: not valid YAML ({where}{problem})") from None
    return raw


def save_config(config: Config, path: str | Path, header: str = "") -> None:
    """Write the full config (defaults included) as YAML, after `header` (comment lines)."""
    text = header + yaml.safe_dump(config_to_dict(config), sort_keys=False)
    Path(path).write_text(text, encoding="utf-8")


def preset_names() -> list[str]:
    """Presets shipped in seq2seq/configs/."""
    return sorted(p.stem for p in (Path(__file__).parent / "configs").glob("*.yaml"))


def resolve_preset(path: str | Path) -> Path:
    """A YAML path as given, or the shipped preset of that name."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    preset = Path(__file__).parent / "configs" / f"{path}.yaml"
    if preset.is_file():
        return preset
    raise ConfigError(f"{path}: no such file or preset; presets: {', '.join(preset_names())}")


def check_device(name: str) -> str:
    """`name` if torch can run on that device here, else a `ConfigError`."""
    import torch  # config stays importable without torch for the YAML tools

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r}: seq2seq runs on cpu, cuda or mps")
    return name
