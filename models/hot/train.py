"""Train or evaluate MixSTE / HoT on 3-D lifting (Human3.6M layout or the synthetic motion set).

    python -m models.pose3d.synthetic --output data/synthetic3d        # the embedded data set
    python -m models.hot.train --data data/synthetic3d --variant hot --output runs/hot
    python -m models.hot.train --data data/h36m --name h36m --detector cpn_ft_h36m_dbb \\
        --frames 243 --dim 512 --num-kept 81 --prune-loop 3 --batch-size 4 --lr 4e-5 ...
    python -m models.hot.train ... --resume runs/hot/last.pt
    python -m models.hot.train ... --eval-only --checkpoint runs/hot/best.pt
    python -m models.hot.train ... --eval-only --official-checkpoint hot_mixste.pth

The recipe is HoT's: AdamW (weight decay 0.1), the learning rate times 0.99 after every epoch,
the loss of :mod:`models.hot.loss` on root-relative poses, horizontal flips for training and a
flip test for evaluation. MPJPE and P-MPJPE are in millimetres, every test frame scored, pooled
per action and averaged over actions (Protocol #1 and #2; :mod:`models.hot.evaluation`).
Checkpoints (``last.pt`` every epoch, ``best.pt`` at the lowest test MPJPE, as HoT selects)
are written atomically with a digest of their tensors (verified when read); a run resumed from
``last.pt`` (epoch boundaries) continues with the same data order and augmentation as an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from models.common.checkpoint import (
    check_optimizer_state,
    check_state_dict,
    load_state_dict_file,
    read_weights_only,
    save_checkpoint,
)
from models.pose3d.h36m import ClipDataset, PoseSequence, load_split

from .build import build_hot_mixste
from .convert import convert_official_state_dict
from .evaluation import evaluate
from .loss import lifting_loss
from .model import MixSTE


@dataclass
class LiftingConfig:
    """Model and training settings (the command line's flags)."""

    variant: str = "hot"
    frames: int = 27
    dim: int = 64
    num_kept: int = 9
    prune_loop: int = 1
    epochs: int = 20
    batch_size: int = 16
    lr: float = 4e-4
    weight_decay: float = 0.1
    lr_decay: float = 0.99
    train_stride: int | None = None
    flip: bool = True
    seed: int = 1126
    max_steps: int | None = None
    log_every: int = 50  # steps between logged training losses (their mean)

    def __post_init__(self) -> None:
        if isinstance(self.log_every, bool) or not isinstance(self.log_every, int) or (
            self.log_every < 1
        ):
            raise ValueError(f"log_every must be a positive integer, got {self.log_every!r}")

    def build_model(self) -> MixSTE:
        sizes = {"num_frames": self.frames, "dim": self.dim}
        if self.variant != "mixste":
            sizes |= {"num_kept": self.num_kept, "prune_loop": self.prune_loop}
        return build_hot_mixste(self.variant, **sizes)


class LiftingTrainer:
    """HoT's training loop over :class:`ClipDataset` clips, with atomic checkpoints."""

    def __init__(
        self,
        config: LiftingConfig,
        train: Sequence[PoseSequence],
        test: Sequence[PoseSequence],
        output: Path,
        device: str = "cpu",
    ) -> None:
        self.config, self.test, self.output = config, test, output
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        self.model = config.build_model().to(self.device)
        stride = config.train_stride or max(config.frames // 3, 1)
        self.clips = ClipDataset(train, config.frames, stride, flip_prob=0.5 * config.flip,
                                 seed=config.seed)  # fmt: skip
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, config.lr_decay)
        self.epoch, self.step, self.best = 0, 0, float("inf")

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
                "best": self.best, "config": asdict(self.config)}  # fmt: skip

    def save(self, path: Path) -> None:
        """Write :meth:`state` atomically with the digest of its tensors.

        Raises:
            OSError: it could not be written (e.g. a full disk), naming ``path``; the previous
                file there is left as it was.
        """
        save_checkpoint(self.state(), path)

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint of :meth:`save` written with the same configuration.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a weights-only checkpoint of this trainer, damaged (its tensors
                differ from the digest written with them; checkpoints without a digest load
                unchecked), another configuration, or a missing entry or one that does not fit
                (mis-shaped tensors), naming the file and the entry. Everything is checked
                before anything is restored.
        """
        state = read_weights_only(path, map_location=str(self.device))
        where = repr(str(path))
        if not isinstance(state, dict) or "model" not in state:
            raise ValueError(f"{where} is not a checkpoint of the lifting trainer")
        if state.get("config") != asdict(self.config):
            raise ValueError(
                f"{path} was written with another configuration: {state.get('config')}"
            )
        for entry in ("optimizer", "scheduler", "epoch", "step", "best"):
            if entry not in state:
                raise ValueError(f"{where} lacks the entry {entry!r} that resuming needs")
        check_state_dict(state["model"], self.model.state_dict(), f"{where} entry 'model'")
        names = {id(p): n for n, p in self.model.named_parameters()}
        check_optimizer_state(state["optimizer"], self.optimizer, names,
                              f"{where} entry 'optimizer'")  # fmt: skip
        if not isinstance(state["scheduler"], dict):
            raise ValueError(f"{where} entry 'scheduler' must be a dict")
        for entry in ("epoch", "step", "best"):
            if isinstance(state[entry], bool) or not isinstance(state[entry], int | float):
                raise ValueError(f"{where} entry {entry!r} must be a number, got "
                                 f"{state[entry]!r}")  # fmt: skip
        for entry, restore in (
            ("model", lambda: self.model.load_state_dict(state["model"])),
            ("optimizer", lambda: self.optimizer.load_state_dict(state["optimizer"])),
            ("scheduler", lambda: self.scheduler.load_state_dict(state["scheduler"])),
        ):
            try:
                restore()
            except (RuntimeError, ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{where}: cannot restore the entry {entry!r}: "
                                 f"{error}") from error  # fmt: skip
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]

    def _log(self, record: dict) -> None:
        print(json.dumps(record), flush=True)
        with open(self.output / "metrics.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")

    def fit(self) -> dict:
        """Train to the configured epochs (or ``max_steps``); returns the last evaluation."""
        self.output.mkdir(parents=True, exist_ok=True)
        metrics: dict = {}
        while self.epoch < self.config.epochs and not self._budget_spent():
            self._train_epoch()
            metrics = evaluate(self.model, self.test, self.config.flip)
            self._log({"epoch": self.epoch, "step": self.step, "time": time.time(),
                       **{k: v for k, v in metrics.items() if k != "per_action"}})  # fmt: skip
            if metrics["MPJPE"] < self.best:
                self.best = metrics["MPJPE"]
                self.save(self.output / "best.pt")
            self.save(self.output / "last.pt")
        return metrics

    def _budget_spent(self) -> bool:
        return self.config.max_steps is not None and self.step >= self.config.max_steps

    def _train_epoch(self) -> None:
        # every epoch's randomness (order, flips, stochastic depth) comes from (seed, epoch), so
        # a run resumed at an epoch boundary continues exactly as an uninterrupted one
        torch.manual_seed(self.config.seed + self.epoch)
        self.clips.set_epoch(self.epoch)
        order = torch.Generator().manual_seed(self.config.seed + self.epoch)
        loader = DataLoader(self.clips, self.config.batch_size, shuffle=True, generator=order,
                            drop_last=True)  # fmt: skip
        if len(loader) == 0:
            raise ValueError(
                f"batch_size={self.config.batch_size} exceeds the {len(self.clips)} training "
                "clips: no batch to train on"
            )
        self.model.train()
        start = time.perf_counter()
        losses: list[float] = []
        for batch in loader:
            if self._budget_spent():
                break
            out = self.model(batch["inputs_2d"].to(self.device))
            target = batch["targets_3d"].to(self.device)
            if out.poses.shape[1] != target.shape[1]:  # seq2frame: the kept frames only
                target = target[torch.arange(len(target))[:, None], out.kept_frames]
            loss = lifting_loss(out.poses, target).total
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            losses.append(float(loss.detach()))
            if self.step % self.config.log_every == 0:
                self._log({"epoch": self.epoch, "step": self.step,
                           "loss": sum(losses) / len(losses),
                           "lr": self.scheduler.get_last_lr()[0], "time": time.time()})  # fmt: skip
                losses.clear()
        self.scheduler.step()
        self.epoch += 1
        self._log({"epoch": self.epoch, "step": self.step, "epoch_seconds":
                   time.perf_counter() - start})  # fmt: skip


def load_weights(model: MixSTE, checkpoint: Path | None, official: Path | None) -> None:
    """Load one of our checkpoints (a training state or a bare state_dict) or an official one.

    Raises:
        ValueError: the file does not fit ``model`` (missing, unexpected or mis-shaped entries,
            under the official names for an official file) or is damaged, naming the file.
    """
    if (checkpoint is None) == (official is None):
        raise ValueError("evaluation needs exactly one of --checkpoint and --official-checkpoint")
    if official is not None:
        weights = convert_official_state_dict(load_state_dict_file(official), model=model,
                                              source=official)  # fmt: skip
    else:
        weights = load_state_dict_file(checkpoint)
        check_state_dict(weights, model.state_dict(), repr(str(checkpoint)))
    model.load_state_dict(weights)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic3d"),
                        help="folder of the npz files (pickled dicts: use trusted files only)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default="synthetic", help="data_3d_<name>.npz")
    parser.add_argument("--detector", default="noisy", help="data_2d_<name>_<detector>.npz")
    parser.add_argument("--output", type=Path, default=Path("runs/hot"))
    parser.add_argument("--resume", type=Path)
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--checkpoint", type=Path, help="our checkpoint, for --eval-only")
    parser.add_argument("--official-checkpoint", type=Path, help="an official HoT checkpoint")
    defaults = LiftingConfig()
    for field, value in asdict(defaults).items():
        flag = "--" + field.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"),
                                default=value)  # fmt: skip
        else:
            kind = type(value) if value is not None else int
            parser.add_argument(flag, type=kind, default=value)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = LiftingConfig(**{k: getattr(args, k) for k in asdict(LiftingConfig())})
    test = load_split(args.data, "test", args.name, args.detector)
    if args.eval_only:
        model = config.build_model()
        load_weights(model, args.checkpoint, args.official_checkpoint)
        metrics = evaluate(model.to(args.device), test, config.flip)
    else:
        train = load_split(args.data, "train", args.name, args.detector)
        trainer = LiftingTrainer(config, train, test, args.output, args.device)
        if args.resume is not None:
            trainer.resume(args.resume)
        metrics = trainer.fit()
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
