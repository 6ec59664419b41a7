"""The training loop: batches, optimiser, schedule, validation, early stopping.

`Trainer.build` loads what a run needs (tokenizers, the encoded corpus, the
run folder of runs.py) and `Trainer.run` trains until a limit, early
stopping or a signal. `--resume` restores the model, optimiser, schedule,
RNG streams and the position in the data order, so an interrupted run ends
with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from seq2seq.checkpoint import CheckpointError, load_file, model_payload, save_file
from seq2seq.config import Config, ConfigError, TrainConfig, check_device, config_to_dict
from seq2seq.data import DataError, collate, make_batches, padding_efficiency, read_lines
from seq2seq.evaluate import dev_scores
from seq2seq.model import Seq2Seq, build_model
from seq2seq.prepare import load_tokenizers, read_stats
from seq2seq.runs import RunFolder, check_resumable, rng_state, set_rng_state
from seq2seq.tokenizer import Tokenizer, set_threads
from seq2seq.translate import Translator

log = logging.getLogger(__name__)

REPORT_EVERY = 50  # steps between log.jsonl training records


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_index: int = 0  # next batch of `epoch` to train on
    best_bleu: float = -1.0
    best_step: int = 0
    bad_validations: int = 0
    train_seconds: float = 0.0
    target_tokens: int = 0
    done: bool = False
    last_valid_step: int = -1  # the step of the last scheduled validation
    # linear_decay under a time budget (no max_steps): the step where the rate reaches 0,
    # fixed at the end of warm-up from its speed so far (0: not yet)
    decay_end: int = 0


@dataclass
class Corpus:
    """Encoded training pairs and the dev sets (as text for BLEU), by name."""

    src: list[list[int]]
    tgt: list[list[int]]
    dev: dict[str, tuple[list[str], list[str]]]


def load_corpus(
    config: Config, src_tok: Tokenizer, tgt_tok: Tokenizer, stats: dict | None = None
) -> Corpus:
    """Encode the train split; pairs over `data.max_len` tokens are skipped.

    The dev sets are `data.valid` and, in a folder prepared from several
    corpora, each corpus's `data.valid.NAME` (stats.json's `dev_sets`).
    """
    folder, data = Path(config.data.dir), config.data
    paths = {lang: folder / f"{data.train}.{lang}" for lang in (data.src, data.tgt)}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"{path}: missing; run seq2seq prepare first")
    src = src_tok.encode(list(read_lines(paths[data.src])))
    tgt = tgt_tok.encode(list(read_lines(paths[data.tgt])))
    keep = [
        i
        for i in range(len(src))
        if 0 < len(src[i]) <= data.max_len and 0 < len(tgt[i]) <= data.max_len
    ]
    if len(keep) < len(src):
        log.info("skipped %d pairs longer than %d tokens", len(src) - len(keep), data.max_len)
    names = (stats or {}).get("dev_sets", [data.valid])
    names = [n for n in names if n == data.valid or n.startswith(f"{data.valid}.")]
    limit = config.train.valid_sentences or None
    dev = {}
    for name in names:
        paths = [folder / f"{name}.{lang}" for lang in (data.src, data.tgt)]
        if all(p.is_file() for p in paths):
            dev_src, dev_ref = (list(read_lines(p))[:limit] for p in paths)
            dev[name.removeprefix(f"{data.valid}.")] = (dev_src, dev_ref)
    return Corpus([src[i] for i in keep], [tgt[i] for i in keep], dev)


def make_optimizer(model: Seq2Seq, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam, or Adadelta with the Cho et al. 2014a setting (ε 1e-6, ρ 0.95)."""
    if train.optimizer == "adadelta":
        return torch.optim.Adadelta(model.parameters(), lr=train.lr, rho=0.95, eps=1e-6)
    # fused: one pass over all parameters instead of a loop of small ones per parameter
    return torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, budget_end: Callable[[], int] = lambda: 0
):
    """constant, plateau (on dev BLEU), or warm-up then inverse-sqrt or linear decay.

    linear_decay reaches 0 at train.max_steps or, without it, at `budget_end()`: the step
    that train.max_minutes reaches, known after warm-up (until then the warm-up alone).
    """
    if train.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=train.plateau_factor, patience=train.plateau_patience
        )
    if train.schedule == "warmup_decay":
        warmup = max(train.warmup_steps, 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, math.sqrt(warmup / (s + 1)))
        )
    if train.schedule == "linear_decay":  # 1 at the end of warm-up, 0 at the end
        warmup = max(train.warmup_steps, 1)

        def linear_decay(s: int) -> float:
            end = train.max_steps or budget_end()
            if not end:
                return min((s + 1) / warmup, 1.0)
            return min((s + 1) / warmup, max(end - s, 0) / max(end - warmup, 1))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def clip_gradients(parameters: Iterable[nn.Parameter], max_norm: float) -> None:
    """torch's clip_grad_norm_, without its multiplication of every gradient by
    exactly 1 where the norm is at most max_norm: most steps (88 % of the attention
    preset's first 400; 2.4 ms of a 250 ms bf16 step at hidden 512, profiled)."""
    parameters = [p for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    if norm > max_norm:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)


def autocast(train: TrainConfig, device: str):
    """bf16/fp16 autocast context, or a no-op for fp32."""
    if train.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if train.precision == "bf16" else torch.float16
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class Trainer:
    """One training run; see the module docstring."""

    def __init__(
        self,
        config: Config,
        run: RunFolder,
        tokenizers: tuple[Tokenizer, Tokenizer],
        corpus: Corpus,
        stats: dict,
        resume: bool = False,
    ) -> None:
        self.config, self.train_cfg, self.run_folder = config, config.train, run
        self.src_tok, self.tgt_tok = tokenizers
        self.corpus, self.stats = corpus, stats
        self.rank, self.world = _distributed_setup(self.train_cfg.device)
        self.device = _device(self.train_cfg.device, self.rank)
        torch.manual_seed(self.train_cfg.seed)
        random.seed(self.train_cfg.seed)
        self.model = build_model(config.model, self.src_tok.vocab_size, self.tgt_tok.vocab_size)
        self.model.to(self.device)
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
        self.progress = Progress()
        self.optimizer = make_optimizer(self.model, self.train_cfg)
        self.scheduler = make_scheduler(
            self.optimizer, self.train_cfg, lambda: self.progress.decay_end
        )
        # fp16 gradients underflow without a loss scale; bf16 has float32's range
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.train_cfg.precision == "fp16"
        )
        self.stop_signal: int | None = None  # set by SIGINT/SIGTERM on this rank
        self.stopping = False  # a signal reached some rank: every rank stops after this step
        self._last_valid_seconds = 0.0  # training time at the last dev report
        self._loss_sum, self._loss_steps = 0.0, 0  # since the last training report
        if resume:
            self._restore()
        elif self.rank == 0:
            self.run_folder.start(config)

    @classmethod
    def build(cls, config: Config, run_dir: str | Path, resume: bool = False) -> Trainer:
        """Check the settings and the run folder, load the tokenizers and the corpus."""
        check_device(config.train.device)
        # oneDNN caches a primitive per matrix-product shape, 1,024 by default; a bf16 run
        # meets thousands even with batches of a multiple of 16 pairs (data.BATCH_MULTIPLE), and
        # a cache that evicts makes new ones for ever while memory grows (docs/measurements.md,
        # "Memory of a bf16 training run, now").
        # oneDNN reads this at its first product, so a process that ran one keeps its own.
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")
        if not config.data.dir:
            raise ConfigError("data.dir: not set; --set data.dir=FOLDER (a prepared corpus)")
        config = with_languages(config, read_stats(config.data.dir))
        run = RunFolder(run_dir)
        if not resume:
            run.check_new()
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
            set_threads(config.train.threads)
        data = config.data
        src_tok, tgt_tok, stats = load_tokenizers(data.dir, data.src, data.tgt)
        corpus = load_corpus(config, src_tok, tgt_tok, stats)
        if not corpus.dev:
            log.warning(
                "%s has no %s split: no validation (the plateau schedule keeps its rate, "
                "patience never stops the run) and the latest model is kept",
                config.data.dir,
                config.data.valid,
            )
        return cls(config, run, (src_tok, tgt_tok), corpus, stats, resume)

    # ------------------------------------------------------------ the loop

    def run(self) -> Path:
        """Train until a limit, early stopping or a signal; returns model.pt."""
        cfg, progress = self.train_cfg, self.progress
        old_handlers = {
            s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
        }
        self.bar = tqdm(
            total=cfg.max_steps or None,
            initial=progress.step,
            unit=" steps",
            disable=None if self.rank == 0 else True,
            dynamic_ncols=True,
        )
        last_save = time.monotonic()
        failed = False
        try:
            for group in () if progress.done else self._batch_groups():
                self._step(group)
                minutes = (time.monotonic() - last_save) / 60
                if (
                    progress.step % cfg.checkpoint_every == 0
                    or minutes >= cfg.checkpoint_minutes
                    or self.stopping
                ):
                    self.save_checkpoint()
                    last_save = time.monotonic()
                if progress.done or self.stopping:
                    break
            if self.stopping:
                log.warning(
                    "stopped by signal at step %d; resume with --resume %s",
                    progress.step,
                    self.run_folder.path,
                )
                return self.run_folder.model_path
            if progress.last_valid_step != progress.step:  # the final state is a candidate too
                self.validate()
            progress.done = True
            self.save_checkpoint()
            self._log_summary()
        except BaseException:
            failed = True
            raise
        finally:
            self.bar.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if dist.is_initialized():
                self._leave_process_group(finished=not failed)
        return self.run_folder.model_path

    def _leave_process_group(self, finished: bool) -> None:
        """End this rank's part in the process group while the interpreter is whole.

        DDP's reducer holds the group: left to interpreter exit, gloo's threads outlived
        it and aborted the process at times (SIGABRT, "terminate called without an
        active exception": 3 of 120 two-process runs, even after destroy_process_group).
        A rank that finished waits for the others first; one that failed does not.
        """
        if finished:  # nccl's barrier would guess the device from the rank
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.net = self.model
        gc.collect()  # the DDP wrapper sits in reference cycles
        dist.destroy_process_group()

    def _batch_groups(self) -> Iterator[list[list[int]]]:
        """Groups of `accumulate x world` batches, one a step, from where the run stands."""
        cfg, progress = self.train_cfg, self.progress
        src_lengths = [len(s) + 1 for s in self.corpus.src]
        tgt_lengths = [len(t) + 1 for t in self.corpus.tgt]
        per_step = cfg.accumulate * self.world
        while progress.epoch < cfg.max_epochs:
            batches = make_batches(
                src_lengths, tgt_lengths, cfg.batch_tokens, cfg.seed, progress.epoch
            )
            if progress.batch_index == 0 and self.rank == 0:
                log.info(
                    "epoch %d: %d batches, %.1f%% real tokens",
                    progress.epoch + 1,
                    len(batches),
                    100 * padding_efficiency(batches, src_lengths, tgt_lengths),
                )
            while progress.batch_index < len(batches):
                group = batches[progress.batch_index : progress.batch_index + per_step]
                progress.batch_index += per_step
                # each rank needs a batch for the gradients' all-reduce: an epoch's last,
                # short group may leave one without (then its few batches are skipped)
                if len(group) >= self.world:
                    yield group
            progress.epoch += 1
            progress.batch_index = 0

    def _step(self, group: list[list[int]]) -> None:
        """Train on one group, count it, report and validate when due."""
        progress = self.progress
        started = time.perf_counter()
        loss, tokens = self._train_step(group)
        progress.train_seconds += time.perf_counter() - started
        progress.target_tokens += tokens
        progress.step += 1
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{loss:.3f}",
            lr=f"{self._lr():.2e}",
            tok_s=f"{progress.target_tokens / progress.train_seconds:.0f}",
            refresh=False,
        )
        self._loss_sum += loss
        self._loss_steps += 1
        self._after_step(loss)

    def _train_step(self, group: list[list[int]]) -> tuple[float, int]:
        """One optimiser step over `group` (accumulate x world batches)."""
        self.net.train()
        corpus = self.corpus
        total_tokens = sum(len(corpus.tgt[i]) + 1 for b in group for i in b)
        mine = group[self.rank :: self.world]
        loss_sum = 0.0
        for index, indices in enumerate(mine):
            batch = collate([corpus.src[i] for i in indices], [corpus.tgt[i] for i in indices]).to(
                self.device
            )
            sync = index == len(mine) - 1 or self.world == 1
            context = contextlib.nullcontext() if sync else self.net.no_sync()
            with context, autocast(self.train_cfg, self.device):
                loss = self.net(batch, self.train_cfg.label_smoothing)
            # DDP averages gradients over ranks; scale so the sum is over the global batch
            self.scaler.scale(loss * self.world / total_tokens).backward()
            loss_sum += loss.item()
        if self.train_cfg.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.model.parameters(), self.train_cfg.clip_norm)
        self.scaler.step(self.optimizer)  # skipped where an fp16 gradient overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.train_cfg.schedule != "plateau":
            self.scheduler.step()
        return loss_sum / max(sum(len(corpus.tgt[i]) + 1 for b in mine for i in b), 1), total_tokens

    def _after_step(self, loss: float) -> None:
        cfg, progress = self.train_cfg, self.progress
        if (
            cfg.schedule == "linear_decay"
            and not (cfg.max_steps or progress.decay_end)
            and progress.step >= cfg.warmup_steps
        ):
            self._fix_decay_end()
        if progress.step % REPORT_EVERY == 0:
            self._report_training()
        if progress.step % cfg.valid_every == 0:
            self.validate()
        elif (
            cfg.valid_minutes
            and progress.train_seconds - self._last_valid_seconds >= 60 * cfg.valid_minutes
        ):
            self.validate(timed=True)
        done, self.stopping = self._on_any_rank(self._limits_reached(), bool(self.stop_signal))
        progress.done = progress.done or done

    def _on_any_rank(self, *flags: bool) -> list[bool]:
        """Each flag true on every rank where it is true on one: ranks keep their own clocks
        and signals, and one that stopped alone would leave the others waiting for it."""
        if self.world == 1:
            return list(flags)
        shared = torch.tensor(flags, dtype=torch.float32, device=self.device)
        dist.all_reduce(shared, op=dist.ReduceOp.MAX)
        return [bool(x) for x in shared.tolist()]

    def _fix_decay_end(self) -> None:
        """The step that train.max_minutes reaches at the speed of the steps so far, less 5 %:
        a machine's speed drifts by a few per cent, and a run that the clock stops early
        ends with the rate above 0. Every rank takes rank 0's."""
        cfg, progress = self.train_cfg, self.progress
        seconds_a_step = progress.train_seconds / progress.step
        left = max(60 * cfg.max_minutes - progress.train_seconds, 0)
        end = torch.tensor([progress.step + int(0.95 * left / seconds_a_step)])
        if self.world > 1:
            end = end.to(self.device)
            dist.broadcast(end, src=0)
        progress.decay_end = int(end.item())
        self.bar.total = progress.decay_end
        self._log({"type": "schedule", "step": progress.step, "decay_end": progress.decay_end})
        if self.rank == 0:
            log.info(
                "the time budget of %g training minutes: the rate reaches 0 at step %d "
                "(%.3f s a step so far; train.max_steps=%d train.max_minutes=0 repeats this run)",
                cfg.max_minutes,
                progress.decay_end,
                seconds_a_step,
                progress.decay_end,
            )

    def _report_training(self) -> None:
        """The mean loss since the last report (one batch alone swings with its lengths)."""
        progress = self.progress
        record = {
            "type": "train",
            "step": progress.step,
            "epoch": progress.epoch,
            "loss": round(self._loss_sum / max(self._loss_steps, 1), 4),
            "lr": self._lr(),
            "tokens_per_s": round(progress.target_tokens / progress.train_seconds),  # since 0
            "target_tokens": progress.target_tokens,
            "train_seconds": round(progress.train_seconds, 3),
        }
        self._loss_sum, self._loss_steps = 0.0, 0
        self._log(record)
        if self.bar.disable and self.rank == 0:  # no progress bar (no terminal): a log line
            log.info(
                "step %d epoch %d: loss %.3f lr %.2e %d target tokens/s",
                progress.step,
                progress.epoch + 1,
                record["loss"],
                record["lr"],
                record["tokens_per_s"],
            )

    def _log_summary(self) -> None:
        progress = self.progress
        if self.rank != 0:
            return
        best = (
            f"best dev BLEU {progress.best_bleu:.2f} at step {progress.best_step}"
            if progress.best_bleu >= 0
            else "no dev set"
        )
        log.info(
            "finished: %d steps, %d epochs, %.1f training minutes; %s; model: %s",
            progress.step,
            progress.epoch,
            progress.train_seconds / 60,
            best,
            self.run_folder.model_path,
        )

    def _limits_reached(self) -> bool:
        """Step, time, epoch or patience limit reached (a resumed run may raise them), or
        the end of a time budget's decay."""
        cfg, progress = self.train_cfg, self.progress
        return bool(
            (cfg.max_steps and progress.step >= cfg.max_steps)
            or (not cfg.max_steps and progress.decay_end and progress.step >= progress.decay_end)
            or (cfg.max_minutes and progress.train_seconds / 60 >= cfg.max_minutes)
            or (cfg.patience and progress.bad_validations >= cfg.patience)
            or progress.epoch >= cfg.max_epochs
        )

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ------------------------------------------------------------ validation

    def validate(self, timed: bool = False) -> dict:
        """Dev loss, perplexity and greedy BLEU; keeps the best model.

        A `timed` validation (train.valid_minutes) only reports: it runs on
        rank 0 alone and neither picks the model nor drives the schedule.
        """
        progress = self.progress
        self._last_valid_seconds = progress.train_seconds
        record = {
            "type": "valid",
            "step": progress.step,
            "epoch": progress.epoch,
            "train_minutes": round(progress.train_seconds / 60, 2),
            "rss_mib": resident_mib(),
        }
        if timed:
            if self.rank == 0 and self.corpus.dev:
                record.update(self._dev_record(), timed=True)
                log.info(
                    "step %d: dev loss %.3f ppl %.2f BLEU %.2f (timed report)",
                    progress.step,
                    record["loss"],
                    record["ppl"],
                    record["bleu"],
                )
                self._log(record)
            return record
        if self.rank == 0 and self.corpus.dev:
            record.update(self._dev_record())
            if record["bleu"] > progress.best_bleu:
                progress.best_bleu, progress.best_step = record["bleu"], progress.step
                progress.bad_validations = 0
                save_file(self.model_file(), self.run_folder.model_path)
            else:
                progress.bad_validations += 1
            log.info(
                "step %d: dev loss %.3f ppl %.2f BLEU %.2f (best %.2f at %d)",
                progress.step,
                record["loss"],
                record["ppl"],
                record["bleu"],
                progress.best_bleu,
                progress.best_step,
            )
        elif self.rank == 0:  # no dev split: the latest model is the model
            save_file(self.model_file(), self.run_folder.model_path)
        if self.world > 1:  # every rank takes the same decisions
            shared = [progress.best_bleu, progress.bad_validations, record.get("bleu", 0.0)]
            box = [shared]
            dist.broadcast_object_list(box, src=0)
            progress.best_bleu, progress.bad_validations, record["bleu"] = box[0]
        if self.train_cfg.schedule == "plateau" and self.corpus.dev:  # no dev BLEU, no plateau
            self.scheduler.step(record["bleu"])
        patience = self.train_cfg.patience
        if patience and progress.bad_validations >= patience:  # _limits_reached stops the run
            log.info("no dev BLEU gain in %d validations: stopping", patience)
        progress.last_valid_step = progress.step
        self._log(record)
        return record

    @torch.no_grad()
    def _dev_record(self) -> dict:
        """Dev scores of the current parameters (evaluate.dev_scores)."""
        self.model.eval()
        translator = Translator(
            self.model, self.src_tok, self.tgt_tok, self.config, str(self.device)
        )
        record = dev_scores(
            translator,
            self.corpus.dev,
            self.train_cfg.batch_tokens,
            lambda: autocast(self.train_cfg, self.device),
        )
        self.model.train()
        return record

    # ------------------------------------------------------------ files

    def model_file(self) -> dict:
        """The self-contained model file of the current parameters."""
        progress = self.progress
        metrics = {
            "dev_bleu": progress.best_bleu if progress.best_bleu >= 0 else None,
            "step": progress.step,
            "epoch": progress.epoch,
            "train_seconds": round(progress.train_seconds, 1),
            "data": self.config.data.dir,
            "data_stats": self.stats,
        }
        return model_payload(
            config_to_dict(self.config),
            self.model.state_dict(),
            self.src_tok.model_bytes,
            self.tgt_tok.model_bytes,
            metrics,
        )

    def save_checkpoint(self) -> None:
        """Model file plus optimiser, schedule, RNG and data position; keep the last K."""
        if self.rank != 0:
            return
        payload = self.model_file()
        payload.update(
            kind="checkpoint",
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng_state(),
            progress=asdict(self.progress),
        )
        self.run_folder.save_checkpoint(
            payload, self.progress.step, self.train_cfg.keep_checkpoints
        )

    def _restore(self) -> None:
        checkpoints = self.run_folder.checkpoints()
        if not checkpoints:  # killed before its first checkpoint: nothing to lose
            log.warning("%s: no checkpoint yet; starting the run from step 0", self.run_folder.path)
            if self.rank == 0:
                self.run_folder.start(self.config)
            return
        payload = load_file(checkpoints[-1], kind="checkpoint")
        check_resumable(self.config, payload["config"])
        try:
            self.model.load_state_dict(payload["state_dict"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            if payload.get("scaler"):  # fp16 runs; older checkpoints have none
                self.scaler.load_state_dict(payload["scaler"])
            set_rng_state(payload["rng"])
            self.progress = Progress(**payload["progress"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise CheckpointError(f"{checkpoints[-1]}: cannot resume from it ({first})") from None
        self.progress.done = self._limits_reached()  # --set may have raised a limit
        self._last_valid_seconds = self.progress.train_seconds
        if self.rank == 0:
            self.run_folder.clean_after_kill(self.progress.step)
        log.info("resumed from %s (step %d)", checkpoints[-1], self.progress.step)

    def _log(self, record: dict) -> None:
        if self.rank == 0:
            self.run_folder.log(record)

    def _on_signal(self, signum: int, frame) -> None:
        log.warning("signal %d: saving a checkpoint after this step", signum)
        self.stop_signal = signum


def resident_mib() -> int | None:
    """This process's resident memory in MiB (Linux), to watch a run's memory per validation."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def with_languages(config: Config, stats: dict) -> Config:
    """`config` with data.src/data.tgt taken from the prepared folder where unset."""
    data = config.data
    data = replace(data, src=data.src or stats["src"], tgt=data.tgt or stats["tgt"])
    return replace(config, data=data)


def _distributed_setup(device: str) -> tuple[int, int]:
    """(rank, world size); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world


def _device(device: str, rank: int) -> torch.device:
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    return torch.device(device)
