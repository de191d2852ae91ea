"""The package as a user installs it: a wheel built from the repository, installed (not
editable) into a fresh virtual environment, imported from outside the checkout.

The environment reuses this one's packages (torch, numpy, ...) through a ``.pth`` line, so
nothing is downloaded; the wheel goes in with ``--no-deps``. A ``.pth`` line adds a folder
without running the ``.pth`` files in it, so the checkout's editable install is not seen there.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.smoke.test_readme import BLOCKS

ROOT = Path(__file__).resolve().parents[2]
#: What a build reads: the project files and the two package folders.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "tokenprune", "models")

SCRIPT = textwrap.dedent('''
    import json
    import sys
    from pathlib import Path

    import torch

    import tokenprune
    import tokenprune_models
    from tokenprune import count_flops
    from tokenprune_models import create_model, list_models, model_entry

    venv = Path(sys.argv[1]).resolve()
    installed = [Path(module.__file__).resolve() for module in (tokenprune, tokenprune_models)]
    assert all(path.is_relative_to(venv) for path in installed), installed

    model = create_model("gtpt_t_coco").eval()
    with torch.no_grad():
        x_logits, y_logits = model(torch.randn(1, 3, 256, 192))
    assert x_logits.shape == (1, 17, 384) and y_logits.shape == (1, 17, 512)
    report = count_flops(model, torch.randn(1, 3, 256, 192))
    shipped = {name: model_entry(name).path for name in list_models(pretrained=True)}
    for name, path in shipped.items():
        assert path.resolve().is_relative_to(venv), path
        create_model(name, pretrained=True)
    package = Path(tokenprune_models.__file__).resolve().parent
    configs = sorted(path.name for path in package.glob("*/configs/*.yaml"))
    assert (package / "py.typed").is_file() and (package / "registry.py").is_file()

    for index, code in enumerate(json.loads(Path(sys.argv[2]).read_text())):
        exec(compile(code, f"README block {index}", "exec"), {"__name__": "readme_example"})
    print(json.dumps({"files": [str(p) for p in installed], "params": report.params,
                      "shipped": sorted(shipped), "configs": configs}))
''')


def _run(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    source, dist, venv, work = (tmp_path / name for name in ("src", "dist", "venv", "work"))
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    _run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation",
          "--no-index", "-q", "-w", dist], tmp_path)  # fmt: skip
    (wheel,) = dist.glob("tokenprune-*.whl")

    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
         tmp_path)  # fmt: skip
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   tmp_path).stdout.strip()  # fmt: skip
    ours = [*site.getsitepackages(), site.getusersitepackages()]
    Path(purelib, "this_environment.pth").write_text("\n".join(ours) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "-q", wheel], tmp_path)  # fmt: skip

    work.mkdir()
    (work / "check.py").write_text(SCRIPT)
    (work / "blocks.json").write_text(json.dumps(BLOCKS))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    out = _run([python, "check.py", venv, "blocks.json"], work, env).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert all(not Path(f).is_relative_to(ROOT) for f in result["files"]), result["files"]
    assert result["params"] > 2e6  # GTPT-T: 2.37 M with its sine table
    assert result["shipped"] == ["gtpt_t_synthetic", "hot_mixste_synthetic", "mixste_synthetic"]
    assert "gtpt_t_coco.yaml" in result["configs"] and "synthetic_hot.yaml" in result["configs"]


def test_timm_is_an_optional_extra_outside_dev():
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project["optional-dependencies"]
    assert any(requirement.startswith("timm") for requirement in extras["timm"])
    # the pinned CPU torch cannot load PyPI's torchvision, which timm imports: not in dev
    assert not any("timm" in requirement for requirement in extras["dev"])
    assert not any("timm" in requirement for requirement in project["dependencies"])
