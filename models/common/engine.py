"""The training engine of the model zoo, shared by 2-D pose and 3-D lifting.

A :class:`Task` (:class:`tokenprune_models.pose.engine.PoseTask`,
:class:`tokenprune_models.hot.train.LiftingTask`) supplies the model, its optimiser and
learning-rate factor, the loss of a batch and its evaluation and metric. The :class:`Trainer` does
the rest: resumable sharding of a dataset seeded per sample (:class:`ShardedSampler`), bfloat16
autocast on GPUs, EMA, a step budget, DDP through ``torchrun``, a tqdm bar, ``metrics.jsonl`` and
``learning_curve.png``, and checkpoints written atomically (with a digest of their tensors, read
with ``weights_only=True``) every epoch and on Ctrl-C or SIGTERM, holding the position inside the
epoch and torch's random state (the CPU's and, with CUDA, the GPUs') so that a resumed run ends
with exactly the weights of an uninterrupted one.

Configs are YAML sections (:func:`load_config`) read into dataclasses (:func:`config_from`: an
unknown key is a one-line error listing the valid ones); :func:`run` is every family's command
line (a :class:`ModelFamily` says how a config becomes a task and its data).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from tokenprune.checks import check_bool, check_int, check_number

from .checkpoint import (
    check_optimizer_state,
    check_state_dict,
    check_weights,
    checkpoint_weights,
    evaluation_weights,
    is_training_checkpoint,
    read_weights_only,
    save_checkpoint,
)
from .cli import USER_ERRORS, HelpFormatter, exit_with_error
from .curves import plot_learning_curve, read_learning_curve
from .ema import ModelEMA
from .presets import check_keys, config_keys

__all__ = [
    "ModelFamily", "ShardedSampler", "Task", "TrainConfig", "Trainer", "check_keys",
    "config_from", "evaluation_weights", "load_config", "load_training_checkpoint",
    "load_weights", "run",
]  # fmt: skip

_T = TypeVar("_T")


@dataclass
class TrainConfig:
    """The engine's settings of a run (a config's ``train`` section). A task's subclass adds
    the settings of its optimiser and schedule (:attr:`Task.config_type`)."""

    output: str  # the run's folder: checkpoints, metrics.jsonl, learning_curve.png
    epochs: int = 300
    batch_size: int = 64  # per process
    #: clips or crops per forward pass of the evaluation (its results do not depend on it)
    eval_batch_size: int = 64
    lr: float = 1e-3  # the base learning rate (the task's factor multiplies it)
    #: weights to start from: a checkpoint of this engine or a plain state_dict file (see
    #: :func:`load_weights`); the task adapts them (e.g. to another input size). A resumed run
    #: ignores it.
    init_from: str | None = None
    workers: int = 2  # DataLoader worker processes
    seed: int = 0
    ema: bool = False  # keep an exponential moving average of the weights
    amp: bool = True  # mixed precision (bfloat16) on CUDA; ignored on CPU
    flip_test: bool = True  # average the predictions of the input and its mirror image
    eval_every: int = 1  # epochs
    log_every: int = 10  # steps between logged (mean) training losses
    max_steps: int | None = None  # stop after this many optimiser steps (a fixed budget)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every", "log_every",
                     "workers", "seed"):
            check_int(name, getattr(self, name), low=0 if name in ("workers", "seed") else 1)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, low=1)
        check_number("lr", self.lr, low=0)
        for name in ("ema", "amp", "flip_test", "progress"):
            check_bool(name, getattr(self, name))


class Task(ABC):
    """What the engine needs from a model family."""

    #: The dataclass of the ``train`` section: :class:`TrainConfig` and the task's schedule.
    config_type: ClassVar[type[TrainConfig]] = TrainConfig
    #: The batch entry the training module reads (``forward(batch[input_key])``).
    input_key: ClassVar[str]
    #: The evaluation's headline number (a key of its flattened metrics, ``"a/b"`` for nested
    #: ones): ``best.pt`` holds the best, ``learning_curve.png`` plots it.
    metric: str
    higher_is_better: ClassVar[bool] = True

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model."""

    @abstractmethod
    def build_optimizer(self, model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        """The optimiser of ``model``'s parameters at ``config.lr``."""

    @abstractmethod
    def lr_factor(self, step: int, config: TrainConfig, steps_per_epoch: int,
                  total_steps: int) -> float:  # fmt: skip
        """The learning-rate multiplier after ``step`` optimiser steps of a run with
        ``steps_per_epoch`` steps per epoch and ``total_steps`` in all."""

    def training_module(self, model: nn.Module) -> nn.Module:
        """The module whose ``forward(batch[input_key])`` runs the training forward pass (what
        DDP wraps); the model itself unless a family needs more (two passes, a teacher)."""
        return model

    def prepare_step(self, model: nn.Module, epoch: float) -> None:  # noqa: B027 (optional hook)
        """Per-step settings at fractional ``epoch`` (e.g. the keep-rate curriculum); none by
        default."""

    @abstractmethod
    def loss(self, outputs: Any, batch: dict[str, Tensor], epoch: float) -> Tensor:
        """The scalar loss of a batch from the training module's outputs."""

    @abstractmethod
    def evaluate(self, model: nn.Module, data: Any, device: torch.device, config: TrainConfig,
                 results_path: Path | None = None) -> dict:  # fmt: skip
        """The metrics of ``model`` on the evaluation ``data`` (the trainer's ``val_set``),
        written to ``results_path`` when given."""

    def score(self, metrics: Mapping) -> float | None:
        """The :attr:`metric` of an evaluation (None when absent, e.g. on non-main
        processes)."""
        value = _flatten(metrics).get(self.metric)
        return None if value is None else float(value)

    def settings(self) -> dict:
        """What a checkpoint records of the task (plain values only; see the release
        commands); nothing by default."""
        return {}

    def load_initial_weights(
        self, model: nn.Module, state_dict: dict[str, Tensor], source: str = "weights"
    ) -> None:
        """Load ``state_dict`` (``init_from``, ``--eval-only --checkpoint``) into a fresh
        ``model``; strictly by default. A family overrides this to adapt weights, e.g. to
        another input size.

        Raises:
            ValueError: missing, unexpected or mis-shaped entries, listed, naming ``source``.
        """
        check_state_dict(state_dict, model.state_dict(), source)
        model.load_state_dict(state_dict)


class ShardedSampler(Sampler[int]):
    """A seeded permutation per epoch, split across processes, resumable mid-epoch.

    Every rank sees ``ceil(n / world_size)`` samples (the permutation wraps around to pad).
    ``start`` skips the first samples of this rank's share, as a resumed run must.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def per_rank(self) -> int:
        return math.ceil(self.size / self.world_size)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        total = self.per_rank() * self.world_size
        order = (order * math.ceil(total / max(self.size, 1)))[:total]
        return iter(order[self.rank :: self.world_size][self.start :])

    def __len__(self) -> int:
        return max(self.per_rank() - self.start, 0)


def _set_cuda_rng_state(states: Sequence[Tensor]) -> None:
    """Restore the GPUs' generators saved by :meth:`Trainer.checkpoint_state`; with fewer GPUs
    now than then, those present get the first states (a resumed run is exact when it runs on
    the same devices)."""
    count = torch.cuda.device_count()
    torch.cuda.set_rng_state_all(list(states)[:count])


def _ignore_interrupts_in_worker(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; only the main process should react (it saves a
    # checkpoint and shuts the workers down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# -- checkpoints ----------------------------------------------------------------------------


def load_training_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint written by :class:`Trainer`, read with ``weights_only=True``.

    The digest of its tensors is verified when it has one (checkpoints written before digests
    load unchecked), and its ``model`` and ``ema`` entries must be state_dicts.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a weights-only checkpoint of this engine, damaged (its tensors differ
            from the digest written with them) or an entry of the wrong kind; the file and the
            entry are named.
    """
    state = read_weights_only(path)
    if not is_training_checkpoint(state):
        raise ValueError(f"{str(path)!r} is not a training checkpoint of this engine")
    for entry in ("model", "ema"):
        if state.get(entry) is not None:
            check_weights(state[entry], f"{str(path)!r} entry {entry!r}")
    return state


def load_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """Model weights from a checkpoint of :class:`Trainer` (the weights its evaluation used,
    see :func:`evaluation_weights`) or from a file holding a state_dict (e.g. shipped fp16
    weights; see :func:`~tokenprune_models.common.checkpoint.load_state_dict_file`), read with
    ``weights_only=True`` (:func:`~tokenprune_models.common.checkpoint.checkpoint_weights`)."""
    return checkpoint_weights(read_weights_only(path), repr(str(path)))


@dataclass
class _Position:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float | None = None  # the best score of Task.metric so far
    history: list = field(default_factory=list)


# -- the trainer ----------------------------------------------------------------------------


class Trainer:
    """Runs training and evaluation of a :class:`Task`.

    Args:
        task: the model family.
        config: the engine's and the task's settings (an instance of ``task.config_type``).
        train_set: a dataset of dicts of tensors holding ``task.input_key`` and what the loss
            reads, with optional ``set_epoch(epoch)``; None for evaluation only.
        val_set: what ``task.evaluate`` scores (None: no evaluation).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or None (CUDA when available; the local
            rank's GPU under torchrun).

    Raises:
        TypeError: ``config`` is not a ``task.config_type``.
        ValueError: fewer training samples per process than ``batch_size``.
    """

    def __init__(self, task: Task, config: TrainConfig, train_set: Dataset | None,
                 val_set: Any = None, device: str | None = None) -> None:  # fmt: skip
        if not isinstance(config, task.config_type):
            raise TypeError(f"config must be a {task.config_type.__name__} for "
                            f"{type(task).__name__}, got {type(config).__name__}")  # fmt: skip
        self.task, self.config = task, config
        self.train_set, self.val_set = train_set, val_set
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if device is None:
            cuda = torch.cuda.is_available()
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
        self.device = torch.device(device)
        self.output = Path(config.output)
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(config.seed)
        self.model = task.build_model().to(self.device)
        self.step_module = None  # only a trainer with training data builds the training passes
        self.sampler = None
        self.steps_per_epoch = 1
        if train_set is not None:
            self.sampler = ShardedSampler(len(train_set), config.seed, self.rank, self.world_size)
            if self.sampler.per_rank() < config.batch_size:
                raise ValueError(f"batch_size={config.batch_size} exceeds the "
                                 f"{self.sampler.per_rank()} training samples per process: "
                                 "no batch to train on")  # fmt: skip
            self.steps_per_epoch = self.sampler.per_rank() // config.batch_size
            self.step_module = task.training_module(self.model)
            if self.distributed:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.step_module = nn.parallel.DistributedDataParallel(self.step_module, ids)
        self.optimizer = task.build_optimizer(self.model, config)
        total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        self.total_steps = max(total_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        if config.init_from is not None and train_set is not None:
            task.load_initial_weights(self.model, load_weights(config.init_from),
                                      repr(config.init_from))  # fmt: skip
        self.ema = ModelEMA(self.model, self.total_steps) if config.ema else None
        self.position = _Position()
        self._stop_signal: int | None = None
        self._losses: list[float] = []  # since the last logged step
        self.amp = config.amp and self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _lr_factor(self, step: int) -> float:
        return self.task.lr_factor(step, self.config, self.steps_per_epoch, self.total_steps)

    # -- checkpoints --------------------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        """What :meth:`save` writes: weights, optimiser, scheduler, position, torch's random
        state (the CPU's and, with CUDA, every GPU's), the config and the task's settings."""
        return {
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "position": asdict(self.position),
            "eval_weights": "ema" if self.eval_model() is not self.model else "model",
            "config": asdict(self.config),
            "task": self.task.settings(),
            "rng": torch.get_rng_state(),
            # every GPU's generator too (dropout and stochastic depth on CUDA draw from it)
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def save(self, name: str = "last.pt") -> Path | None:
        """Write a checkpoint atomically, with the digest of its tensors (main process only).

        Raises:
            OSError: it could not be written (e.g. a full disk), naming the path; the previous
                checkpoint of that name is left as it was.
        """
        if not self.is_main:
            return None
        path = self.output / name
        save_checkpoint(self.checkpoint_state(), path)
        return path

    def resume(self, path: str | os.PathLike) -> None:
        """Continue a run from a checkpoint of :meth:`save`.

        Every entry is checked before anything is restored.

        Raises:
            ValueError: a damaged checkpoint (see :func:`load_training_checkpoint`), a missing
                entry, or one that does not fit this model and optimiser (mis-shaped, missing
                or unexpected tensors), naming the file and the entry.
        """
        state = load_training_checkpoint(path)
        where = repr(str(path))
        for entry in ("optimizer", "scheduler", "position", "rng"):
            if entry not in state:
                raise ValueError(f"{where} lacks the entry {entry!r} that resuming needs (to "
                                 "start from its weights only, use init_from)")  # fmt: skip
        check_state_dict(state["model"], self.model.state_dict(), f"{where} entry 'model'")
        ema = state.get("ema") if self.ema is not None else None
        if ema is not None:
            check_state_dict(ema, self.ema.state_dict(), f"{where} entry 'ema'")
        names = {id(p): n for n, p in self.model.named_parameters()}
        check_optimizer_state(state["optimizer"], self.optimizer, names,
                              f"{where} entry 'optimizer'")  # fmt: skip
        if not isinstance(state["scheduler"], dict):
            raise ValueError(f"{where} entry 'scheduler' must be a dict, got "
                             f"{type(state['scheduler']).__name__}")  # fmt: skip
        try:
            position = _Position(**state["position"])
        except TypeError as error:
            raise ValueError(f"{where} entry 'position' is not a training position: "
                             f"{error}") from None  # fmt: skip
        rng = state["rng"]
        if not (isinstance(rng, Tensor) and rng.dtype == torch.uint8 and rng.dim() == 1):
            raise ValueError(f"{where} entry 'rng' must be a uint8 tensor (torch's random "
                             "state)")  # fmt: skip
        # a checkpoint written without CUDA (or before this entry existed) has none: the GPUs'
        # generators are then left as they are
        cuda_rng = state.get("cuda_rng")
        if cuda_rng is not None and not (
            isinstance(cuda_rng, list | tuple)
            and all(isinstance(r, Tensor) and r.dtype == torch.uint8 and r.dim() == 1
                    for r in cuda_rng)
        ):  # fmt: skip
            raise ValueError(f"{where} entry 'cuda_rng' must be a list of uint8 tensors (the "
                             "GPUs' random states)")  # fmt: skip
        restore_cuda = cuda_rng is not None and torch.cuda.is_available()
        for entry, restore in (
            ("model", lambda: self.model.load_state_dict(state["model"])),
            ("ema", lambda: None if ema is None else self.ema.load_state_dict(ema)),
            ("optimizer", lambda: self.optimizer.load_state_dict(state["optimizer"])),
            ("scheduler", lambda: self.scheduler.load_state_dict(state["scheduler"])),
            ("rng", lambda: torch.set_rng_state(rng)),
            ("cuda_rng", lambda: _set_cuda_rng_state(cuda_rng) if restore_cuda else None),
        ):
            try:
                restore()
            except (RuntimeError, ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{where}: cannot restore the entry {entry!r}: "
                                 f"{error}") from error  # fmt: skip
        self.position = position

    # -- training -----------------------------------------------------------------------------

    def _loader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            sampler=self.sampler,
            num_workers=self.config.workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_interrupts_in_worker,
            # its own generator (worker seeds): the global one drives dropout and stochastic
            # depth and is restored exactly on resume
            generator=torch.Generator().manual_seed(self.config.seed + self.position.epoch),
        )

    def _handle_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _log(self, record: dict) -> None:
        if self.is_main:
            with open(self.output / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def fit(self) -> dict:
        """Train until the last epoch (or ``max_steps``), evaluating every ``eval_every`` epochs
        and at the end.

        Returns:
            The last evaluation's metrics (empty without a validation set). Interrupted by
            Ctrl-C or SIGTERM, it writes ``last.pt`` and raises ``KeyboardInterrupt``.
        """
        if self.train_set is None:
            raise ValueError("fit needs a training set")
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._handle_signal) for s in signals}
        metrics: dict = {}
        evaluated = False  # not ``bool(metrics)``: non-main processes get empty metrics
        try:
            while self.position.epoch < self.config.epochs and not self._budget_spent():
                self._train_epoch()
                if self._stop_signal is not None:
                    break
                epoch_done = self.position.step_in_epoch == 0
                if epoch_done and self.val_set is not None and (
                    self.position.epoch % self.config.eval_every == 0 or self._budget_spent()
                    or self.position.epoch == self.config.epochs
                ):  # fmt: skip
                    metrics, evaluated = self.evaluate(), True
                    self._record_evaluation(metrics)
                self.save()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self._stop_signal is not None:
            self.save()
            name = signal.Signals(self._stop_signal).name
            raise KeyboardInterrupt(f"stopped by {name}; resume from {self.output / 'last.pt'}")
        if self.val_set is not None and not evaluated:
            metrics = self.evaluate()
            self._record_evaluation(metrics)
            self.save()
        return metrics

    def _budget_spent(self) -> bool:
        limit = self.config.max_steps
        return limit is not None and self.position.global_step >= limit

    def _train_epoch(self) -> None:
        pos, config = self.position, self.config
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(pos.epoch)
        self.sampler.set_position(pos.epoch, pos.step_in_epoch * config.batch_size)
        self.step_module.train()
        steps = self.steps_per_epoch
        if config.max_steps is not None:  # the bar ends where the budget does
            steps = min(steps, pos.step_in_epoch + config.max_steps - pos.global_step)
        bar = tqdm(total=steps, initial=pos.step_in_epoch, desc=f"epoch {pos.epoch + 1}",
                   disable=not (self.is_main and config.progress), leave=False)  # fmt: skip
        for batch in self._loader():
            if pos.step_in_epoch >= self.steps_per_epoch or self._budget_spent():
                break
            loss = self._step(batch)
            pos.step_in_epoch += 1
            pos.global_step += 1
            self._losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
            if pos.global_step % config.log_every == 0:
                self._log({"step": pos.global_step, "epoch": pos.epoch + 1,
                           "loss": sum(self._losses) / len(self._losses),
                           "lr": self.optimizer.param_groups[0]["lr"], "time": time.time()})
                self._losses.clear()  # fmt: skip
            if self._stop_signal is not None:
                bar.close()
                return
        bar.close()
        if pos.step_in_epoch >= self.steps_per_epoch or not self._budget_spent():
            pos.epoch += 1
            pos.step_in_epoch = 0

    def _step(self, batch: dict[str, Tensor]) -> float:
        pos = self.position
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        progress = pos.epoch + pos.step_in_epoch / self.steps_per_epoch
        self.task.prepare_step(self.model, progress)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.step_module(batch[self.task.input_key])
            loss = self.task.loss(outputs, batch, progress)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {pos.global_step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, pos.global_step)
        return float(loss.detach())

    # -- evaluation ---------------------------------------------------------------------------

    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA when it is kept and has moved away from its
        starting copy (:meth:`ModelEMA.has_moved`), the trained weights otherwise. A short run
        whose EMA momentum soon rises to 1 thus never evaluates an average still made of
        its first steps."""
        if self.ema is not None and self.ema.has_moved(self.position.global_step):
            return self.ema.module
        return self.model

    @torch.no_grad()
    def evaluate(self, model: nn.Module | None = None, results_file: str | None = None) -> dict:
        """The task's metrics of ``model`` (default: :meth:`eval_model`) on the validation set
        (main process; the others wait and get ``{}``); ``results_file`` is written in the
        output folder."""
        metrics: dict = {}
        if self.is_main:
            path = None if results_file is None else self.output / results_file
            metrics = self.task.evaluate(model or self.eval_model(), self.val_set, self.device,
                                         self.config, path)  # fmt: skip
        if self.distributed:
            dist.barrier()
        return metrics

    def _record_evaluation(self, metrics: dict) -> None:
        pos, task = self.position, self.task
        score = task.score(metrics)
        pos.history.append({"epoch": pos.epoch, task.metric: score})
        self._log({"eval_epoch": pos.epoch, "step": pos.global_step, "time": time.time(),
                   **_flatten(metrics)})  # fmt: skip
        self.plot_learning_curve()
        if score is not None and (pos.best is None or (
            score > pos.best if task.higher_is_better else score < pos.best
        )):  # fmt: skip
            pos.best = score
            self.save("best.pt")

    def plot_learning_curve(self) -> Path | None:
        """``learning_curve.png`` beside ``metrics.jsonl``: the loss and the task's metric
        against the step (main process only)."""
        metrics = self.output / "metrics.jsonl"
        if not self.is_main or not metrics.is_file():
            return None
        metric = self.task.metric
        curve = read_learning_curve(metrics, metric)
        title = f"{type(self.task).__name__} ({self.output.name})"
        return plot_learning_curve([("run", curve)], self.output / "learning_curve.png",
                                   metric, title)  # fmt: skip


def _flatten(metrics: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- configs --------------------------------------------------------------------------------


def config_from(cls: type[_T], values: object, where: str, **fixed: Any) -> _T:
    """The dataclass ``cls`` from a config section ``values`` and ``fixed`` fields (not
    settable from the section), e.g. ``config_from(TrainConfig, config["train"],
    "section 'train'", output="runs/x")``.

    Raises:
        ValueError: keys that are not fields of ``cls`` (see :func:`check_keys`), or the
            dataclass's own checks.
    """
    valid = [name for name in config_keys(cls) if name not in fixed]
    return cls(**check_keys(values, valid, where), **fixed)


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (),
                sections: Sequence[str] | None = None) -> dict:  # fmt: skip
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML).

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid YAML, a malformed override, or a section not in ``sections``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {str(path)!r} does not exist")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config {str(path)!r} must be a mapping of sections")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set takes section.key=value, got {item!r}")
        section, name = key.split(".", 1)
        config.setdefault(section, {})[name] = yaml.safe_load(value)
    unknown = set(config) - set(sections or config)
    if unknown:
        raise ValueError(f"config {str(path)!r} has unknown sections {sorted(unknown)} "
                         f"(known: {tuple(sections)})")  # fmt: skip
    return config


# -- the command line -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily(ABC):
    """What the command line (:func:`run`) needs to know about a model family; a subclass per
    kind of data (2-D keypoints, 3-D lifting) says how its data and trainer are built.

    Attributes:
        name: shown in ``--help`` (and the default output folder).
        make_task: the task of a config.
        load_official: loads a released checkpoint of the official implementation for a task,
            for ``--eval-only --official-checkpoint``; None if there is none.
    """

    name: str
    make_task: Callable[[dict], Task]
    load_official: Callable[[Path, Task], nn.Module] | None = None
    #: The sections a config may have.
    sections: ClassVar[tuple[str, ...]] = ("model", "data", "train")

    @abstractmethod
    def build_trainer(self, task: Task, config: dict, data_root: str | os.PathLike,
                      output: str | os.PathLike, with_train: bool = True,
                      device: str | None = None) -> Trainer:  # fmt: skip
        """The data sets and trainer of ``task`` under a config; without ``with_train`` no
        training data is read (evaluation only)."""


def run(family: ModelFamily, argv: Sequence[str] | None = None, doc: str | None = None) -> int:
    """Parse ``argv`` and train, resume or evaluate a family's model; returns the exit status
    (130 when stopped by Ctrl-C or SIGTERM, after writing ``last.pt``).

    A bad setting (an unknown config key or section, an invalid value, a missing data folder,
    config or checkpoint, a checkpoint that does not fit the model: the ``ValueError``,
    ``TypeError`` and ``OSError`` of reading the config, building the task and its trainer and
    loading the weights) ends the command with one line, ``<prog>: error: <message>``, and exit
    status 2; an error while training is raised as it is.
    """
    parser = argparse.ArgumentParser(description=doc or f"Train or evaluate {family.name}.",
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--config", required=True, type=Path,
                        help=f"YAML config (sections: {', '.join(family.sections)})")
    parser.add_argument("--data", required=True, type=Path, help="data set root folder")
    parser.add_argument("--output", type=Path, default=Path("runs") / family.name.lower(),
                        help="run folder: checkpoints, metrics.jsonl, learning_curve.png")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override a config entry (the value is read as YAML); repeatable "
                        "(default: none)")  # fmt: skip
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the local rank's GPU "
                        "when CUDA is available, else the CPU)")  # fmt: skip
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint of this CLI "
                        "(default: none, a fresh run)")  # fmt: skip
    parser.add_argument("--eval-only", action=argparse.BooleanOptionalAction, default=False,
                        help="evaluate, do not train")  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, help="with --eval-only: a checkpoint of this "
                        "CLI or a weights-only file (shipped weights) (default: none)")  # fmt: skip
    if family.load_official is not None:
        parser.add_argument("--official-checkpoint", type=Path, help="with --eval-only: a "
                            "released checkpoint of the official implementation "
                            "(default: none)")  # fmt: skip
    args = parser.parse_args(argv)
    official = getattr(args, "official_checkpoint", None)
    if args.eval_only and (official is None) == (args.checkpoint is None):
        parser.error("--eval-only needs one of --checkpoint and --official-checkpoint")
    if not args.eval_only and (official is not None or args.checkpoint is not None):
        parser.error("--checkpoint and --official-checkpoint evaluate (with --eval-only); to "
                     "start training from weights, set train.init_from")
    if args.eval_only and args.resume is not None:
        parser.error("--resume continues a training run; it does not go with --eval-only")

    try:
        config = load_config(args.config, args.overrides, family.sections)
        task = family.make_task(config)
        trainer = family.build_trainer(task, config, args.data, args.output,
                                       with_train=not args.eval_only, device=args.device)
        if args.eval_only and official is not None:
            model = family.load_official(official, task).to(trainer.device)
        elif args.eval_only:
            weights = load_weights(args.checkpoint)
            task.load_initial_weights(trainer.model, weights, repr(str(args.checkpoint)))
            model = trainer.model
        elif args.resume is not None:
            trainer.resume(args.resume)
    except USER_ERRORS as error:
        exit_with_error(parser, error)
    if args.eval_only:
        metrics = trainer.evaluate(model, results_file="results.json")
    else:
        try:
            metrics = trainer.fit()
        except KeyboardInterrupt as stop:
            if trainer.is_main:
                print(f"\n{stop}", file=sys.stderr)
            return 130
    if trainer.is_main:
        print(json.dumps(metrics, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
