"""Checkpoint reading (weights only, unwrapping) and atomic writing."""

from __future__ import annotations

import pytest
import torch

from tokenprune_models.common.atomic import atomic_path, write_text_atomic
from tokenprune_models.common.checkpoint import load_state_dict_file, save_atomic


def test_unwraps_common_layouts(tmp_path):
    weights = {"a.weight": torch.ones(2), "b": torch.zeros(1)}
    for wrapped in (weights, {"state_dict": weights}, {"model": {"module." + k: v for k, v in
                                                                weights.items()}, "epoch": 3}):
        path = tmp_path / "ckpt.pth"
        torch.save(wrapped, path)
        loaded = load_state_dict_file(path)
        assert loaded.keys() == weights.keys()
        assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_rejects_files_without_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.ones(1)], path)
    with pytest.raises(ValueError, match="holds no state_dict"):
        load_state_dict_file(path)


def test_atomic_save_keeps_the_last_good_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    save_atomic({"w": torch.ones(3)}, path)

    def failing_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_state_dict_file(path)["w"], torch.ones(3))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_atomic_path_replaces_only_a_complete_write(tmp_path):
    path = tmp_path / "nested" / "report.md"
    assert write_text_atomic(path, "first\n") == path  # creates the folder
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(path) as tmp:
        tmp.write_text("half a rep")
        assert path.read_text() == "first\n"  # the target is untouched while writing
        raise RuntimeError("interrupted")
    assert path.read_text() == "first\n"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    write_text_atomic(path, "second\n")
    assert path.read_text() == "second\n"
    assert list(path.parent.iterdir()) == [path]
