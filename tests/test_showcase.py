"""The showcase (the README's main job) runs and reports what it claims."""

from __future__ import annotations

import re

from benchmarks.showcase import ShowcaseEncoder, main


def test_showcase_report(tmp_path, capsys):
    output = tmp_path / "showcase.md"
    assert main(["--repeats", "1", "--batches", "1", "--output", str(output)]) == 0
    report = output.read_text()
    assert report == capsys.readouterr().out.rstrip("\n") + "\n"
    rows = re.findall(r"^\| (\d+) \| (MHSA|MHGA) \| (\d) \| (\d+) / (\d+) \| (\d+) / (\d+) \|",
                      report, flags=re.MULTILINE)
    assert len(rows) == 12
    pruned_queries = [int(r[3]) for r in rows]
    # GTPT token flow: 18 + 256, then 18 + 179, then per group 6 + 76 and 6 + 25
    assert pruned_queries == [274] * 4 + [197] * 2 + [82] * 4 + [31] * 2
    assert [int(r[5]) for r in rows] == [274] * 6 + [262] * 6
    ratio = float(re.search(r"all GMACs \(incl\. attention\) \| [\d.]+ \| [\d.]+ \| ([\d.]+)",
                            report).group(1))
    assert ratio < 0.5


def test_unpruned_and_pruned_share_outputs_shape():
    import torch

    model = ShowcaseEncoder(keep_rates=(1.0, 0.7, 0.3, 0.1)).eval()
    out = model(torch.randn(2, 256, 128))
    assert out.shape == (2, 18, 128)
