import json

import pytest

import dynamicvit
from dynamicvit.cli import main

TINY = dict(img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2)


def test_tune_picks_the_largest_rate_that_meets_the_target_and_reports_the_curve():
    r = dynamicvit.tune("vit_tiny_patch16_224", target_speedup=1e-3, batch_size=2, repeats=1, warmup=0, **TINY)
    assert r["keep_rate"] == 0.9  # every rate meets a tiny target: the most accurate one is chosen
    assert [p["keep_rate"] for p in r["curve"]] == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    macs = [p["gmacs"] for p in r["curve"]]
    assert macs == sorted(macs, reverse=True) and r["dense_gmacs"] > macs[0]
    only_fast = dynamicvit.tune(
        "vit_tiny_patch16_224", target_ms=1e9, batch_size=1, rates=(0.5, 0.3), repeats=1, warmup=0, **TINY
    )
    assert only_fast["keep_rate"] == 0.5 and len(only_fast["curve"]) == 2


@pytest.mark.promise(
    "bad input",
    "keep ratios that leave nothing → `keep ratios [...] leave no locations or exceed 1 …`; a "
    "latency target out of reach → `target speed-up 1000x is out of reach for … at batch 1 on this "
    "machine: keep rates 0.3-0.9 measured 0.60-0.64x the dense model (…)`",
)
def test_tune_skips_rates_convnext_cannot_take_and_says_when_the_target_is_out_of_reach():
    small = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}
    r = dynamicvit.tune("convnext_tiny", target_speedup=1e-3, batch_size=1, img_size=64, repeats=1, warmup=0, **small)
    assert [p["keep_rate"] for p in r["curve"]] == [0.9, 0.8, 0.7, 0.6, 0.5]  # rho - 0.4 must stay above 0
    with pytest.raises(ValueError, match="target speed-up 1000x is out of reach .* measured .*x the dense model"):
        dynamicvit.tune("vit_tiny_patch16_224", target_speedup=1000, batch_size=1, repeats=1, warmup=0, **TINY)
    with pytest.raises(ValueError, match="exactly one target"):
        dynamicvit.tune("vit_tiny_patch16_224", target_speedup=1.5, target_ms=10.0)
    with pytest.raises(ValueError, match="keep ratios .* leave no locations"):
        dynamicvit.tune("convnext_tiny", target_speedup=1.1, rates=(0.3,), img_size=64, **small)


def test_cli_tune(tmp_path, capsys):
    argv = ["tune", "--model", "deit_tiny_patch16_224", "--img-size", "32", "--batch-size", "1", "--repeats", "1"]
    assert main([*argv, "--warmup", "0", "--target-ms", "1e9", "--rates", "0.8", "0.6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keep_rate"] == 0.8
    saved = tmp_path / "tune.json"
    assert main([*argv, "--warmup", "0", "--target-ms", "1e9", "--rates", "0.7", "--save", str(saved)]) == 0
    r = json.loads(saved.read_text())
    assert r["keep_rate"] == 0.7 and r["provenance"]["command"].startswith("dynamicvit tune ")
    from dynamicvit.docsgen.tables import render

    assert "tune picks keep rate **0.7**" in render("tune", tmp_path)
    assert main([*argv, "--target-speedup", "-1"]) == 2
    assert "argument --target-speedup: must be positive, got -1" in capsys.readouterr().err
