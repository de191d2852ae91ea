"""Every command line of the zoo and the benchmarks: its ``--help`` shows every option's default
(or that it is required) and offers ``--no-`` for every on/off flag; a bad config setting ends a
training command with one ``error:`` line naming it, and exit status 2."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Every command line (``python -m <module>``), listed by hand: a new one belongs here.
CLI_MODULES = [
    "tokenprune_models.pose.synthetic",
    "tokenprune_models.pose3d.synthetic",
    "tokenprune_models.gtpt.train",
    "tokenprune_models.gtpt.demo",
    "tokenprune_models.gtpt.release",
    "tokenprune_models.tokenpose.train",
    "tokenprune_models.dppt.train",
    "tokenprune_models.hot.train",
    "tokenprune_models.hot.demo",
    "tokenprune_models.hot.release",
    "benchmarks.baselines",
    "benchmarks.gpu_check",
    "benchmarks.gtpt",
    "benchmarks.host_cost",
    "benchmarks.hot",
    "benchmarks.kernels",
    "benchmarks.patch_timm",
    "benchmarks.showcase",
]

#: The training command lines, with a config of each family.
TRAINERS = {
    "gtpt": ("tokenprune_models.gtpt.train", "models/gtpt/configs/synthetic_demo.yaml"),
    "tokenpose": ("tokenprune_models.tokenpose.train",
                  "models/tokenpose/configs/synthetic_ppt_s.yaml"),
    "dppt": ("tokenprune_models.dppt.train", "models/dppt/configs/synthetic_dppt_s.yaml"),
    "hot": ("tokenprune_models.hot.train", "models/hot/configs/synthetic_hot.yaml"),
}  # fmt: skip


def test_every_command_line_is_listed():
    """A module of the zoo or the benchmarks that runs as ``python -m`` is in
    :data:`CLI_MODULES` (so that its ``--help`` is checked)."""
    found = set()
    for folder, package in (("models", "tokenprune_models"), ("benchmarks", "benchmarks")):
        for path in (ROOT / folder).rglob("*.py"):
            if 'if __name__ == "__main__":' in path.read_text():
                parts = path.relative_to(ROOT / folder).with_suffix("").parts
                found.add(".".join((package, *parts)))
    listed = {m if isinstance(m, str) else m.values[0] for m in CLI_MODULES}
    assert found == listed


def _help(module: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(["--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def _entries(text: str) -> list[tuple[str, str]]:
    """``(invocation, help)`` of every argument listed in a ``--help`` text."""
    entries: list[list[str]] = []
    in_section = False
    for line in text.splitlines():
        if line in ("options:", "positional arguments:"):
            in_section = True
        elif not line.strip() or not line.startswith(" "):
            in_section = False
        elif in_section and re.match(r"^  \S", line):
            invocation, _, rest = line[2:].partition("  ")
            entries.append([invocation.strip(), rest.strip()])
        elif in_section and entries:
            entries[-1][1] += " " + line.strip()
    return [(invocation, " ".join(text.split())) for invocation, text in entries]


@pytest.mark.parametrize("module", CLI_MODULES)
def test_help_shows_every_default_and_negatable_flags(module, capsys, monkeypatch):
    entries = _entries(_help(module, capsys, monkeypatch))
    assert len(entries) >= 2, entries
    for invocation, text in entries:
        if invocation.startswith("-h, --help"):
            continue
        assert text, (module, invocation)  # every argument has help text
        assert "(default: " in text or text.endswith("(required)"), (module, invocation, text)
        assert "(default: None)" not in text, (module, invocation)  # say what None means
        options = invocation.split(", ")
        if all(re.fullmatch(r"-{1,2}[\w-]+", o) for o in options):  # a flag: takes no value
            names = {o.removeprefix("--") for o in options}
            assert any(f"no-{name}" in names for name in names), (module, invocation)


@pytest.mark.parametrize("family", TRAINERS)
@pytest.mark.parametrize(("override", "section", "valid"), [
    ("train.bogus=3", "train", "max_steps"),
    ("model.bogus=3", "model", "image_size|num_frames"),
])  # fmt: skip
def test_config_typo_is_one_line_error_with_the_valid_keys(family, override, section, valid,
                                                           tmp_path, capsys):  # fmt: skip
    module, config = TRAINERS[family]
    argv = ["--config", str(ROOT / config), "--data", str(tmp_path), "--output",
            str(tmp_path / "run"), "--set", override]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    [line] = err.splitlines()  # one line, no traceback
    assert re.match(r"\S+: error: ", line), line
    assert "bogus" in line and re.search(rf"\b({valid})\b", line), line
    if section == "train" or family == "hot":
        assert f"config section '{section}' has unknown keys ['bogus']; valid keys: " in line


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "optimizer.lr=1"], r"unknown sections \['optimizer'\]"),
    (["--set", "epochs=3"], r"--set takes section\.key=value, got 'epochs=3'"),
    (["--set", "train.epochs=many"], r"epochs must be an int, got str"),
    (["--set", "train.ema=ture"], r"ema must be a bool"),
    (["--set", "model.preset=gtpt_x"], r"must be one of \[.*'gtpt_t_coco'"),
    (["--config", "missing.yaml"], r"config 'missing\.yaml' does not exist"),
    (["--data", "nowhere"], r"data folder 'nowhere' does not exist"),
    (["--resume", "missing.pt"], r"missing\.pt"),
    (["--set", "train.batch_size=64"], r"batch_size=64 exceeds the \d+ training samples"),
])  # fmt: skip
def test_every_config_error_is_one_line_and_status_2(args, message, synthetic_pose_data,
                                                     tmp_path, capsys, monkeypatch):  # fmt: skip
    from tokenprune_models.gtpt.train import main

    monkeypatch.chdir(tmp_path)
    argv = ["--config", str(ROOT / TRAINERS["gtpt"][1]), "--data", str(synthetic_pose_data),
            "--output", str(tmp_path / "run"), "--set", "train.workers=0",
            "--set", "train.batch_size=4", *args]  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        main(argv)  # the later --config / --data win
    assert stop.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert re.search(rf"^\S+: error: .*{message}", line), line


def test_the_command_itself_exits_2_without_a_traceback(tmp_path):
    module, config = TRAINERS["tokenpose"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", config, "--data", str(tmp_path),
         "--set", "train.bogus=3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert re.fullmatch(r"\S+: error: config section 'train' has unknown keys \['bogus'\]; "
                        r"valid keys: [\w, ]*\bmax_steps\b[\w, ]*", line), line

def test_boolean_flags_take_no_value(tmp_path, capsys):
    """``--wholebody ture`` is a usage error, not a silent False."""
    from tokenprune_models.pose.synthetic import main

    with pytest.raises(SystemExit) as stop:
        main(["--output", str(tmp_path), "--wholebody", "ture"])
    assert stop.value.code == 2
    assert "unrecognized arguments: ture" in capsys.readouterr().err
    assert not (tmp_path / "annotations").exists()


@pytest.mark.parametrize(("module", "args", "message"), [
    ("tokenprune_models.pose.synthetic", ["--train", "-1"], "must be an integer >= 0, got '-1'"),
    ("tokenprune_models.pose.synthetic", ["--size", "8", "8"], "must be an integer >= 32"),
    ("tokenprune_models.pose3d.synthetic", ["--frames", "0"], "must be an integer >= 1"),
    ("tokenprune_models.pose3d.synthetic", ["--noise", "nan"], "must be a number >= 0"),
    ("tokenprune_models.gtpt.release", ["gtpt_t_synthetic", "--stage", "a.yaml", "nowhere"],
     r"checkpoint 'nowhere/last\.pt' does not exist"),
    ("benchmarks.hot", ["--repeats", "0"], "must be an integer >= 1"),
])  # fmt: skip
def test_bad_arguments_are_usage_errors(module, args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(args)
    assert stop.value.code == 2
    assert re.search(message, capsys.readouterr().err.splitlines()[-1])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--checkpoint", "best.pt"], "--checkpoint and --official-checkpoint evaluate"),
        (["--eval-only", "--checkpoint", "best.pt", "--resume", "last.pt"],
         "--resume continues a training run"),
    ],
)
def test_contradictory_weight_options_are_refused(extra, message, tmp_path, capsys):
    from tokenprune_models.gtpt.train import main

    argv = ["--config", "models/gtpt/configs/synthetic_demo.yaml", "--data", str(tmp_path),
            "--output", str(tmp_path / "run"), *extra]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
