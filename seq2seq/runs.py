"""A training run's folder, its checkpoints, and what resuming may change.

    RUN_DIR/config.yaml                   the full config, defaults included
    RUN_DIR/log.jsonl                     a JSON record per training report, validation, or
                                          the step a time budget's linear decay ends
    RUN_DIR/checkpoints/stepNNNNNNNN.pt   the last K training checkpoints
    RUN_DIR/model.pt                      the best model by dev BLEU

A checkpoint is a model file plus the optimiser, scheduler, RNG and progress
state, so a resumed run ends with the same parameters as one never stopped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from seq2seq.checkpoint import save_file
from seq2seq.config import Config, ConfigError, config_from_dict, config_to_dict, save_config
from seq2seq.errors import Seq2SeqError
from seq2seq.files import atomic_path, remove_stale_temporaries

RUN_FILES = {"config.yaml", "log.jsonl", "checkpoints", "model.pt", "curves.png"}
# The first line of a run's config.yaml: a config.yaml without it is the user's.
CONFIG_HEADER = "# seq2seq train: this run's full config, defaults included\n"

# Settings a resumed run cannot change: the weights, the data order and the
# optimiser state in the checkpoint were made with them.
FIXED_ON_RESUME = {"model": None, "data": None, "train": ("optimizer", "schedule")}


class RunFolderError(Seq2SeqError):
    """A folder cannot hold this run (it holds another, or files of the user's)."""


class RunFolder:
    """The files of one training run; only rank 0 writes them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.model_path = self.path / "model.pt"
        self.log_path = self.path / "log.jsonl"
        self.checkpoint_dir = self.path / "checkpoints"

    def check_new(self) -> None:
        """A new run may use a missing or empty folder, or one whose run was
        killed before its first checkpoint; nothing else is overwritten."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise RunFolderError(f"{self.path}: exists and is not a folder")
        if self.model_path.exists() or self.checkpoints():
            raise RunFolderError(
                f"{self.path} holds a run already: --resume {self.path} or another --run-dir"
            )
        foreign = sorted(p.name for p in self.path.iterdir() if p.name not in RUN_FILES)
        config = self.path / "config.yaml"
        if config.is_file() and not config.read_text(errors="replace").startswith(CONFIG_HEADER):
            foreign.insert(0, config.name)
        if foreign:
            raise RunFolderError(
                f"{self.path}: holds files that are not a run's ({foreign[0]}, ...); "
                "choose another --run-dir"
            )

    def start(self, config: Config) -> None:
        """Make the folder (or reset one killed before its first checkpoint)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)
        remove_stale_temporaries(self.checkpoint_dir)
        save_config(config, self.path / "config.yaml", header=CONFIG_HEADER)

    def checkpoints(self) -> list[Path]:
        """The checkpoint files, oldest first."""
        return sorted(self.checkpoint_dir.glob("step*.pt"))

    def save_checkpoint(self, payload: dict[str, Any], step: int, keep: int) -> None:
        """Write the checkpoint of `step`; only the last `keep` stay."""
        save_file(payload, self.checkpoint_dir / f"step{step:08d}.pt")
        for old in self.checkpoints()[:-keep]:
            old.unlink()

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to log.jsonl."""
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def clean_after_kill(self, step: int) -> None:
        """Remove the temporary files of killed writes, and the log records past
        `step` (the resumed run replays those steps and logs them again)."""
        remove_stale_temporaries(self.checkpoint_dir)
        remove_stale_temporaries(self.path)
        if not self.log_path.is_file():
            return
        kept = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a record cut short by the kill
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        with atomic_path(self.log_path) as tmp:
            tmp.write_text("".join(kept), encoding="utf-8")


def rng_state() -> dict[str, Any]:
    """Every RNG stream the training loop draws from (dropout, Python)."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def check_resumable(config: Config, saved: dict[str, Any]) -> None:
    """Refuse `--set` changes that the checkpoint cannot follow, naming the key."""
    new = config_to_dict(config)
    old = config_to_dict(config_from_dict(saved))
    for section, keys in FIXED_ON_RESUME.items():
        for key in keys or new[section]:
            if new[section][key] != old[section][key]:
                raise ConfigError(
                    f"--resume: {section}.{key} cannot change in a resumed run "
                    f"({old[section][key]!r} -> {new[section][key]!r}); start a new run"
                )
