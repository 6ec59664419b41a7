"""Pictures: training curves, attention weights, the phrase space (needs matplotlib).

matplotlib is the optional `plot` extra; without it these functions raise a
`MissingDependencyError` that says how to install it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from seq2seq.config import ConfigError
from seq2seq.data import DataError, collate_sources
from seq2seq.errors import MissingDependencyError
from seq2seq.files import atomic_path
from seq2seq.search import forced_attention
from seq2seq.translate import Translator

log = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no screen
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plots need matplotlib: pip install 'seq2seq[plot]'") from None
    return plt


def check_picture_path(output: str | Path) -> str:
    """The picture format `output`'s suffix names; ConfigError where matplotlib has none
    (checked before the work that draws it)."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    kind = Path(output).suffix[1:].lower()
    if kind not in formats:
        raise ConfigError(
            f"{output}: a picture's name ends in .png or another of: {', '.join(formats)}"
        )
    return kind


def _save(fig, output: str | Path) -> Path:
    """Write `fig` to `output` under a temporary name (a killed run leaves no partial
    picture), and close it."""
    kind = check_picture_path(output)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format=kind, dpi=100)
    _pyplot().close(fig)
    return Path(output)


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Training loss, dev loss and dev BLEU against steps, from `log.jsonl`."""
    run_dir = Path(run_dir)
    records = read_log(run_dir)
    train = [r for r in records if r.get("type") == "train" and "loss" in r]
    valid = [r for r in records if r.get("type") == "valid" and "bleu" in r]
    plt = _pyplot()
    fig, (loss_ax, bleu_ax) = plt.subplots(1, 2, figsize=(11, 4))
    loss_ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    loss_ax.plot([r["step"] for r in valid], [r["loss"] for r in valid], "o-", label="dev")
    loss_ax.set(xlabel="step", ylabel="loss (nats/token)", title="loss")
    loss_ax.legend()
    sets = sorted({name for r in valid for name in r.get("sets", {})})
    for index, name in enumerate(sets):  # several dev sets: each, and their mean below
        points = [(r["step"], r["sets"][name]["bleu"]) for r in valid if name in r.get("sets", {})]
        bleu_ax.plot(*zip(*points), ".-", color=f"C{index + 3}", label=name)
    label = "mean" if sets else None
    bleu_ax.plot(
        [r["step"] for r in valid], [r["bleu"] for r in valid], "o-", color="C2", label=label
    )
    bleu_ax.set(xlabel="step", ylabel="BLEU", title="dev BLEU (greedy)")
    if sets:
        bleu_ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    return _save(fig, output or run_dir / "curves.png")


def read_log(run_dir: Path) -> list[dict]:
    """The records of a run's log.jsonl; a line cut short by a kill is skipped."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        raise DataError(f"{run_dir}: no log.jsonl (not a training run folder)")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: not a JSON record, skipped", path, number + 1)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def plot_attention(translator: Translator, text: str, output: str | Path, beam: int) -> str:
    """Translate `text` with `beam` and draw the source x target attention weights.

    Returns:
        The translation that was drawn.
    """
    if translator.config.model.decoder != "attention":
        raise ConfigError(
            f"the model has a {translator.config.model.decoder} decoder: no attention to draw"
        )
    result = translator.translate([text], beam=beam)[0]
    src_ids = translator.encode_sources([text])[0]
    src_tensor = collate_sources([src_ids])[0].to(translator.device)
    weights = forced_attention(translator.model, src_tensor, result.tokens).numpy()  # [T, S]
    if translator.config.model.encoder == "grconv":
        weights = weights[:, : len(src_ids) + 1]  # the leaves only
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1 + 0.5 * weights.shape[1], 1 + 0.4 * weights.shape[0]))
    ax.imshow(weights, cmap="Greys", vmin=0, vmax=1)
    ax.set_xticks(range(weights.shape[1]), translator.src.pieces(src_ids) + ["</s>"], rotation=90)
    ax.set_yticks(range(weights.shape[0]), translator.tgt.pieces(result.tokens) + ["</s>"])
    ax.set(xlabel="source", ylabel="translation")
    fig.tight_layout()
    _save(fig, output)
    return result.texts[0]


def plot_phrase_space(labels: list[str], points: torch.Tensor, output: str | Path) -> Path:
    """Scatter 2-D points with their phrase labels (Cho et al. 2014a, Fig. 4)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 8))
    ax.scatter(points[:, 0], points[:, 1], s=8)
    for label, (x, y) in zip(labels, points.tolist()):
        ax.annotate(label, (x, y), fontsize=8, parse_math=False)  # "$5$" is text, not TeX
    ax.set(title="phrase representations c (first two principal components)")
    fig.tight_layout()
    return _save(fig, output)


def plot_by_length(table: dict[str, list[dict]], output: str | Path) -> Path:
    """BLEU per source-length bucket, a line per model (Cho et al. 2014b, Fig. 4)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in table.items():
        points = [(r["bucket"], r["bleu"]) for r in rows if r["bleu"] is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
    ax.set(xlabel="source sentence length (words)", ylabel="BLEU", title="BLEU by length")
    ax.legend()
    fig.tight_layout()
    return _save(fig, output)


def plot_runs(run_dirs: list[Path], output: str | Path) -> Path:
    """Dev BLEU of several runs on one figure, against training minutes and steps."""
    plt = _pyplot()
    fig, (minutes_ax, steps_ax) = plt.subplots(1, 2, figsize=(13, 4.5))
    for index, run_dir in enumerate(run_dirs):
        valid = [r for r in read_log(Path(run_dir)) if r.get("type") == "valid" and "bleu" in r]
        if not valid:
            log.warning("%s: no dev scores yet", run_dir)
            continue
        # the colour cycle has 10 colours: runs 11-20 get dashed lines, 21-30 dotted
        style = {"label": Path(run_dir).name, "linestyle": ("-", "--", ":")[index // 10 % 3]}
        bleu = [r["bleu"] for r in valid]
        minutes_ax.plot([r["train_minutes"] for r in valid], bleu, ".", **style)
        steps_ax.plot([r["step"] for r in valid], bleu, ".", **style)
    minutes_ax.set(xlabel="training minutes", ylabel="dev BLEU (greedy)")
    steps_ax.set(xlabel="step", ylabel="dev BLEU (greedy)")
    fig.legend(*steps_ax.get_legend_handles_labels(), loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 0.87, 1))  # room for the legend beside the axes
    return _save(fig, output)
