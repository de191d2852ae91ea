"""The README's "Train on the synthetic data" block, run as written: every family's synthetic
config trains from a freshly generated data set without ``--set data.*`` overrides.

Each command of the block runs in-process in an empty working folder, with a few arguments
appended (argparse lets the later value win) so that it takes seconds: a tiny data set
(``--train 6 --val 3 --size 96 96``; ``--frames 30``) and ``--set train.max_steps=2`` with
batches of 2. The rest is checked as the README promises it: ``last.pt`` after two steps,
``best.pt``, ``metrics.jsonl`` beside ``learning_curve.png``, a progress bar whose total is the
step budget, and ``results.json`` from ``--eval-only``.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

from tokenprune_models.common.engine import load_training_checkpoint
from tokenprune_models.pose.synthetic import data_section

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

#: What each command gets appended, by the module's last two names.
TINY_DATA = {
    "pose.synthetic": ["--train", "6", "--val", "3", "--size", "96", "96"],
    "pose3d.synthetic": ["--frames", "30"],
}
TRAIN = ["train.max_steps=2", "train.batch_size=2", "train.workers=0", "train.progress=true",
         "train.log_every=1"]  # fmt: skip
EVALUATE = ["train.workers=0", "train.progress=false"]


def readme_commands() -> list[list[str]]:
    """The ``python -m`` command lines of the README section, split into arguments."""
    text = README.read_text()
    section = text.split("### Train on the synthetic data\n", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    lines = [line.split("#", 1)[0].rstrip() for line in block.splitlines()]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def test_the_section_has_a_command_for_every_family():
    commands = readme_commands()
    assert all(c[:2] == ["python", "-m"] for c in commands), commands
    modules = [c[2] for c in commands]
    assert modules[0] == "tokenprune_models.pose.synthetic"
    assert {"tokenprune_models.gtpt.train", "tokenprune_models.tokenpose.train",
            "tokenprune_models.dppt.train", "tokenprune_models.hot.train",
            "tokenprune_models.pose3d.synthetic"} <= set(modules)  # fmt: skip
    configs = {c[c.index("--config") + 1] for c in commands if "--config" in c}
    for config in ("models/tokenpose/configs/synthetic_tokenpose_s.yaml",
                   "models/tokenpose/configs/synthetic_ppt_s.yaml",
                   "models/dppt/configs/synthetic_dppt_s.yaml",
                   "models/gtpt/configs/synthetic_t_128x96.yaml",
                   "models/hot/configs/synthetic_hot.yaml"):  # fmt: skip
        assert config in configs
    # no command needs to say where the generator's files are
    assert not any(arg.startswith("data.") for c in commands for arg in c)


@pytest.mark.parametrize("config", sorted(
    str(path.relative_to(ROOT)) for family in ("gtpt", "tokenpose", "dppt")
    for path in (ROOT / "models" / family / "configs").glob("synthetic_*.yaml")
))  # fmt: skip
def test_every_2d_synthetic_config_names_the_generators_files(config):
    section = yaml.safe_load((ROOT / config).read_text())["data"]
    assert section == data_section(), config


def test_the_generator_writes_the_files_its_data_section_names(tmp_path):
    from tokenprune_models.pose.synthetic import main

    for wholebody in (False, True):
        root = tmp_path / str(wholebody)
        flag = "--wholebody" if wholebody else "--no-wholebody"
        assert main(["--output", str(root), "--train", "1", "--val", "1", "--size", "64", "64",
                     flag]) == 0  # fmt: skip
        for key, name in data_section(wholebody).items():
            assert (root / name).is_file() if key.endswith("annotations") else any(
                (root / name).iterdir()
            ), (key, name)


def _run(command: list[str], capsys) -> tuple[str, str]:
    module, args = command[2], command[3:]
    short = ".".join(module.split(".")[-2:])
    if short in TINY_DATA:
        args += TINY_DATA[short]
    elif module.endswith(".train"):
        args = [ROOT / a if a.startswith("models/") else a for a in args]
        args = [str(a) for a in args]
        for item in EVALUATE if "--eval-only" in args else TRAIN:
            args += ["--set", item]
    assert importlib.import_module(module).main(args) == 0, command
    out = capsys.readouterr()
    return out.out, out.err


@pytest.mark.slow
def test_every_readme_command_runs_from_tiny_generated_data(tmp_path, capsys, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    trained, evaluated = [], []
    for command in readme_commands():
        out, err = _run(command, capsys)
        if not command[2].endswith(".train"):
            continue
        run = Path(command[command.index("--output") + 1])
        if "--eval-only" in command:
            evaluated.append(run)
            results = json.loads((run / "results.json").read_text())
            assert results and json.loads(out[out.index("{"):]), command
            continue
        trained.append(run)
        state = load_training_checkpoint(run / "last.pt")
        assert state["position"]["global_step"] == 2, command
        assert (run / "best.pt").is_file() and (run / "learning_curve.png").stat().st_size > 0
        assert (run / "metrics.jsonl").is_file()
        totals = re.findall(r"\|\s*\d+/(\d+) \[", err)  # tqdm: "| 1/2 [00:01<...]"
        assert totals and set(totals) == {"2"}, (command, err[-500:])  # the budget, not the epoch
    assert len(trained) == 8 and len(evaluated) == 7  # GTPT's stage 1 is not evaluated alone
    assert sorted(evaluated) == sorted(set(evaluated)) and set(evaluated) <= set(trained)
