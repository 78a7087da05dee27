import json

import pytest

from dynamicvit.tools.demo import DemoConfig, run_demo


def test_quick_demo_writes_full_report(tmp_path, fake_fashion):
    out = tmp_path / "demo"
    summary = run_demo(DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False))
    for name in ("report.md", "curves.png", "kept_tokens.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["keep_rate"] == 0.7
    assert summary["sparse"]["kept_tokens"] == [25, 17, 12] and summary["num_patches"] == 36
    assert summary["sparse"]["gmacs"] < 0.65 * summary["dense"]["gmacs"]  # >= 35% fewer MACs
    report = (out / "report.md").read_text()
    assert f"{summary['sparse']['top1']:.2f}" in report and "random tokens" in report
    # a second run into the folder is refused unless it resumes (reusing the finished runs) or overwrites
    with pytest.raises(ValueError, match=r"already holds results \(.*report.md.*\); pass --resume"):
        run_demo(DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False))
    logs = {run: (out / run / "metrics.jsonl").read_bytes() for run in ("teacher", "sparse")}
    again = run_demo(DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False, resume=True))
    assert again["sparse"]["top1"] == summary["sparse"]["top1"]
    assert {run: (out / run / "metrics.jsonl").read_bytes() for run in logs} == logs  # nothing trained again
    # a demo of another configuration in the same folder is refused, naming what differs
    with pytest.raises(ValueError, match=r"another configuration \(batch_size 32 -> 16"):
        run_demo(
            DemoConfig.quick(out_dir=str(out), data_dir=str(fake_fashion), progress=False, batch_size=16, resume=True)
        )
    assert not list(out.glob(".dynamicvit*"))  # no lock or temporary file left behind
