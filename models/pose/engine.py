"""Training and evaluation loop for top-down pose models.

The loop is model-agnostic: a :class:`PoseTask` supplies the model, the loss of a batch and the
predictions for evaluation. The engine handles the rest:

* data: deterministic, resumable sharding (:class:`ShardedSampler`) over
  :class:`~models.pose.data.KeypointDataset`, whose augmentation is seeded per sample;
* optimisation: Adam with linear warmup and step decay, optional mixed precision on GPUs,
  model EMA;
* checkpoints: written atomically at the end of every epoch and when the run is interrupted
  (Ctrl-C or SIGTERM), including the position inside the epoch, so that a resumed run ends with
  exactly the weights of an uninterrupted one; the best evaluation is kept apart;
* logs: a tqdm progress bar and ``metrics.jsonl`` (one JSON object per line);
* several processes through ``torchrun`` (PyTorch DDP; NCCL on GPUs, gloo on CPUs).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from models.common.checkpoint import (
    check_optimizer_state,
    check_state_dict,
    check_weights,
    extract_state_dict,
    read_weights_only,
    save_checkpoint,
)
from models.common.curves import plot_learning_curve, read_learning_curve
from models.common.ema import ModelEMA

from .data import KeypointDataset
from .evaluation import evaluate_keypoints, evaluate_wholebody, keypoint_results, write_results
from .transforms import affine_matrix, transform_points

__all__ = [
    "PoseTask", "ShardedSampler", "TrainConfig", "Trainer", "evaluation_weights",
    "load_training_checkpoint", "load_weights",
]  # fmt: skip


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of a run."""

    output: str
    epochs: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    #: "step": the rate drops 10x at each of ``milestones`` (epochs), as published;
    #: "cosine": after the warmup it follows a half cosine from ``lr`` to 0 at the last step.
    lr_schedule: str = "step"
    milestones: tuple[int, ...] = (200, 260)  # epochs at which the learning rate drops 10x
    warmup_steps: int = 0  # linear learning-rate warmup over the first steps
    #: weights to start from: a checkpoint of this engine or a plain state_dict file (see
    #: :func:`load_weights`); the task adapts them (e.g. to another input size). A resumed run
    #: ignores it.
    init_from: str | None = None
    workers: int = 2
    seed: int = 0
    ema: bool = False  # GTPT's published configs turn it on
    amp: bool = True  # mixed precision (bfloat16) on CUDA; ignored on CPU
    flip_test: bool = True
    eval_every: int = 1  # epochs
    log_every: int = 10  # steps
    max_steps: int | None = None  # stop after this many optimiser steps (a fixed budget)
    progress: bool = True  # tqdm progress bar

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("workers", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        self.milestones = tuple(self.milestones)


class PoseTask(ABC):
    """What the engine needs from a model family."""

    #: Input ``(height, width)``, keypoint count and left/right pairs of the model.
    image_size: tuple[int, int]
    num_keypoints: int
    flip_pairs: tuple[tuple[int, int], ...]

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model."""

    def training_module(self, model: nn.Module) -> nn.Module:
        """The module whose ``forward(images)`` runs the training forward pass (what DDP wraps);
        the model itself unless a family needs more (two passes, a teacher)."""
        return model

    @abstractmethod
    def loss(self, outputs, batch: dict[str, Tensor], epoch: float) -> Tensor:
        """The loss of a batch from the training module's outputs."""

    def prepare_step(self, model: nn.Module, epoch: float) -> None:  # noqa: B027 (optional hook)
        """Per-step settings at fractional ``epoch`` (e.g. the keep-rate curriculum); none by
        default."""

    @abstractmethod
    def predict(self, model: nn.Module, images: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
        """``(keypoints [B, K, 2] in input pixels, scores [B, K])`` in eval mode."""

    @abstractmethod
    def target_fn(self):
        """The dataset's target function (see :class:`~models.pose.data.KeypointDataset`)."""

    def load_initial_weights(
        self, model: nn.Module, state_dict: dict[str, Tensor], source: str = "weights"
    ) -> None:
        """Load ``state_dict`` (``TrainConfig.init_from``, ``--eval-only --checkpoint``) into a
        fresh ``model``; strictly by default. A family overrides this to adapt weights, e.g. to
        another input size.

        Raises:
            ValueError: missing, unexpected or mis-shaped entries, listed, naming ``source``
                (the file).
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


def _ignore_interrupts_in_worker(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; only the main process should react (it saves a
    # checkpoint and shuts the workers down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
    if not _is_training_checkpoint(state):
        raise ValueError(f"{str(path)!r} is not a training checkpoint of this engine")
    for entry in ("model", "ema"):
        if state.get(entry) is not None:
            check_weights(state[entry], f"{str(path)!r} entry {entry!r}")
    return state


def _is_training_checkpoint(state: object) -> bool:
    return isinstance(state, dict) and "model" in state and "position" in state


def load_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """Model weights from a checkpoint of :class:`Trainer` (the weights its evaluation used,
    see :func:`evaluation_weights`) or from a file holding a state_dict (e.g. shipped fp16
    weights; see :func:`~models.common.checkpoint.load_state_dict_file`), read with
    ``weights_only=True``."""
    state = read_weights_only(path)
    if _is_training_checkpoint(state):
        weights = evaluation_weights(state)
        check_weights(weights, f"{str(path)!r} entry {_evaluation_choice(state)!r}")
        return weights
    return extract_state_dict(state, repr(str(path)))


def evaluation_weights(state: dict) -> dict[str, Tensor]:
    """The weights of a :class:`Trainer` checkpoint that its evaluation used (see
    :meth:`Trainer.eval_model`): ``ema`` or ``model``. Checkpoints written before the choice was
    recorded evaluate their EMA when they have one."""
    choice = _evaluation_choice(state)
    if choice not in ("ema", "model") or state.get(choice) is None:
        raise ValueError(f"checkpoint has no {choice!r} weights to evaluate")
    return state[choice]


def _evaluation_choice(state: dict) -> object:
    return state.get("eval_weights", "ema" if state.get("ema") is not None else "model")


@dataclass
class _Position:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best: float = -1.0
    history: list = field(default_factory=list)


class Trainer:
    """Runs training and evaluation of a :class:`PoseTask`.

    Args:
        task: the model family.
        config: optimisation and bookkeeping settings.
        train_set, val_set: the data (``val_set`` may be None).
        val_annotations: the validation keypoint file (for pycocotools).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available; the local rank's GPU under
            torchrun).
    """

    def __init__(
        self,
        task: PoseTask,
        config: TrainConfig,
        train_set: KeypointDataset | None,
        val_set: KeypointDataset | None = None,
        val_annotations: str | os.PathLike | None = None,
        device: str | None = None,
    ) -> None:
        self.task, self.config = task, config
        self.train_set, self.val_set = train_set, val_set
        self.val_annotations = val_annotations
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if device is None:
            if torch.cuda.is_available():
                device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
            else:
                device = "cpu"
        self.device = torch.device(device)
        self.output = Path(config.output)
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(config.seed)
        self.model = task.build_model().to(self.device)
        self.step_module = None  # only a trainer with training data builds the training passes
        if train_set is not None:
            self.step_module = task.training_module(self.model)
            if self.distributed:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self.step_module = nn.parallel.DistributedDataParallel(self.step_module, ids)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.sampler = None
        self.steps_per_epoch = 1
        if train_set is not None:
            self.sampler = ShardedSampler(len(train_set), config.seed, self.rank, self.world_size)
            self.steps_per_epoch = max(1, self.sampler.per_rank() // config.batch_size)
        total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        self.total_steps = max(total_steps, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        if config.init_from is not None and train_set is not None:
            task.load_initial_weights(self.model, load_weights(config.init_from),
                                      repr(config.init_from))  # fmt: skip
        self.ema = ModelEMA(self.model, max(total_steps, 1)) if config.ema else None
        self.position = _Position()
        self._stop_signal: int | None = None
        self.amp = config.amp and self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _lr_factor(self, step: int) -> float:
        """Learning-rate multiplier after ``step`` optimiser steps: linear warmup, then a 10x
        drop at each milestone epoch (``"step"``) or a half cosine to 0 at the last step
        (``"cosine"``)."""
        warmup = self.config.warmup_steps
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if self.config.lr_schedule == "cosine":
            span = max(self.total_steps - warmup, 1)
            progress = min(max(step - warmup, 0) / span, 1.0)
            return factor * 0.5 * (1.0 + math.cos(math.pi * progress))
        epoch = step // self.steps_per_epoch
        return factor * 0.1 ** sum(epoch >= m for m in self.config.milestones)

    # -- checkpoints --------------------------------------------------------------------------

    def checkpoint_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "position": asdict(self.position),
            "eval_weights": "ema" if self.eval_model() is not self.model else "model",
            "config": asdict(self.config),
            "rng": torch.get_rng_state(),
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
        for entry, restore in (
            ("model", lambda: self.model.load_state_dict(state["model"])),
            ("ema", lambda: None if ema is None else self.ema.load_state_dict(ema)),
            ("optimizer", lambda: self.optimizer.load_state_dict(state["optimizer"])),
            ("scheduler", lambda: self.scheduler.load_state_dict(state["scheduler"])),
            ("rng", lambda: torch.set_rng_state(rng)),
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
            persistent_workers=False,
        )

    def _handle_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    def _log(self, record: dict) -> None:
        if self.is_main:
            with open(self.output / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def fit(self) -> dict:
        """Train until the last epoch (or ``max_steps``), evaluating every ``eval_every`` epochs.

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
        pos = self.position
        self.train_set.set_epoch(pos.epoch)
        self.sampler.set_position(pos.epoch, pos.step_in_epoch * self.config.batch_size)
        self.step_module.train()
        bar = tqdm(
            total=self.steps_per_epoch, initial=pos.step_in_epoch, desc=f"epoch {pos.epoch + 1}",
            disable=not (self.is_main and self.config.progress), leave=False,
        )  # fmt: skip
        for batch in self._loader():
            if pos.step_in_epoch >= self.steps_per_epoch or self._budget_spent():
                break
            loss = self._step(batch)
            pos.step_in_epoch += 1
            pos.global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}")
            if pos.global_step % self.config.log_every == 0:
                lr = self.optimizer.param_groups[0]["lr"]
                self._log({"step": pos.global_step, "epoch": pos.epoch + 1, "loss": loss,
                           "lr": lr, "time": time.time()})  # fmt: skip
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
            outputs = self.step_module(batch["image"])
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
        """OKS AP/AR of ``model`` (default: :meth:`eval_model`) on the validation set (main
        process; the others wait)."""
        metrics: dict = {}
        if self.is_main:
            metrics = evaluate_model(
                self.task, model or self.eval_model(), self.val_set, self.val_annotations,
                self.device, self.config.batch_size, self.config.workers, self.config.flip_test,
                None if results_file is None else self.output / results_file,
            )  # fmt: skip
        if self.distributed:
            dist.barrier()
        return metrics

    def _record_evaluation(self, metrics: dict) -> None:
        pos = self.position
        score = metrics.get("AP", metrics.get("wholebody", {}).get("AP", -1.0))
        pos.history.append({"epoch": pos.epoch, "AP": score})
        self._log({"eval_epoch": pos.epoch, "step": pos.global_step, **_flatten(metrics)})
        self.plot_learning_curve()
        if score > pos.best:
            pos.best = score
            self.save("best.pt")


    def plot_learning_curve(self) -> Path | None:
        """``learning_curve.png`` beside ``metrics.jsonl``: loss and AP against the step (main
        process only)."""
        metrics = self.output / "metrics.jsonl"
        if not self.is_main or not metrics.is_file():
            return None
        metric = "wholebody/AP" if self.task.num_keypoints == 133 else "AP"
        curve = read_learning_curve(metrics, metric)
        title = f"{type(self.task).__name__} ({self.output.name})"
        return plot_learning_curve([("run", curve)], self.output / "learning_curve.png",
                                   metric, title)  # fmt: skip


def _flatten(metrics: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@torch.no_grad()
def predict_dataset(
    task: PoseTask, model: nn.Module, dataset: KeypointDataset, device, batch_size: int = 64,
    workers: int = 0, flip: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Predictions for every person of ``dataset`` mapped back to image pixels:
    ``(image_ids [N], keypoints [N, K, 2], scores [N, K])``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    ids, points, scores = [], [], []
    height, width = task.image_size
    for batch in loader:
        coords, conf = task.predict(model, batch["image"].to(device), flip)
        coords, conf = coords.cpu().double().numpy(), conf.cpu().double().numpy()
        for i in range(len(coords)):
            back = affine_matrix(batch["centre"][i].double().numpy(),
                                 batch["size"][i].double().numpy(), 0.0, (width, height),
                                 inverse=True)  # fmt: skip
            points.append(transform_points(coords[i], back))
        scores.append(conf)
        ids.append(batch["image_id"].numpy())
    if not ids:
        k = task.num_keypoints
        return np.zeros(0, dtype=np.int64), np.zeros((0, k, 2)), np.zeros((0, k))
    return np.concatenate(ids), np.stack(points), np.concatenate(scores)


def evaluate_model(
    task: PoseTask, model: nn.Module, dataset: KeypointDataset, annotations, device,
    batch_size: int = 64, workers: int = 0, flip: bool = True, results_path=None,
) -> dict:  # fmt: skip
    """OKS metrics of ``model`` on ``dataset`` (COCO AP/AR, or per part for 133 keypoints)."""
    ids, points, scores = predict_dataset(task, model, dataset, device, batch_size, workers, flip)
    results = keypoint_results(ids, points, scores)
    if results_path is not None:
        write_results(results, results_path)
    if dataset.num_keypoints == 133:
        return evaluate_wholebody(annotations, results)
    return evaluate_keypoints(annotations, results)
