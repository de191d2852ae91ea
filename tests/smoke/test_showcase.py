"""The showcase (GTPT-T pruned vs unpruned) runs and reports GTPT's token flow."""

from __future__ import annotations

import re

import torch

from benchmarks.showcase import PUBLISHED, main, trace_layers
from tokenprune_models.gtpt import build_gtpt


def test_showcase_report(tmp_path, capsys):
    output = tmp_path / "showcase.md"
    assert main(["--repeats", "1", "--batches", "1", "--output", str(output)]) == 0
    report = output.read_text()
    assert report == capsys.readouterr().out.rstrip("\n") + "\n"
    rows = re.findall(r"^\| (\d+) \| (MHSA|MHGA) \| (\d) \| (\d+) / (\d+) \| (\d+) / (\d+) \|",
                      report, flags=re.MULTILINE)
    assert len(rows) == 12
    # GTPT-T on COCO: 1 + 256, then 17 + 179, then per group 6 + 76 and 6 + 25
    assert [int(r[3]) for r in rows] == [257] * 4 + [196] * 2 + [82] * 4 + [31] * 2
    assert [int(r[5]) for r in rows] == [257] * 4 + [273] * 2 + [262] * 6
    ratio = float(re.search(r"all GMACs \(incl\. attention\) \| [\d.]+ \| [\d.]+ \| ([\d.]+)",
                            report).group(1))
    assert ratio < 0.5


def test_trace_agrees_with_the_kept_tokens_of_the_model():
    model = build_gtpt("gtpt_t_coco", keep_rates=PUBLISHED).eval()
    images = torch.randn(1, 3, 256, 192)
    traces = trace_layers(model, images)
    with torch.inference_mode():
        out = model.forward_tokens(images)
    assert traces[4].queries == 17 + out.kept_coarse.shape[1]
    assert traces[6].queries == 6 + out.kept_groups.shape[2]
    assert traces[11].queries == 6 + out.kept_fine.shape[2]
    assert traces[11].keys == 3 * 6 + out.kept_fine.shape[2]
