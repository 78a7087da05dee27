"""The threshold keep mode: per-image counts by threshold, packed execution, calibration, accounting."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.bench.flops_report import compare_flops
from dynamicvit.bench.forwards import padded_forward
from dynamicvit.cli import main
from dynamicvit.core.calibrate import calibrate
from dynamicvit.core.flops import count_flops, per_image_gmacs
from dynamicvit.core.losses import keep_ratio_loss
from dynamicvit.export import export_onnx
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.weights.checkpoint import save_checkpoint

CNX = dict(depths=(1, 1, 4, 1), dims=(8, 16, 32, 32), num_classes=5)
SWIN = dict(img_size=64, window_size=2, embed_dim=8, depths=(1, 1, 4, 1), num_heads=(1, 2, 4, 8), num_classes=5)


def spread(model: torch.nn.Module) -> torch.nn.Module:
    """Predictors whose scores differ clearly between tokens and images (fresh ones score all alike)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.score_predictor.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def adaptive_vit(**kw) -> torch.nn.Module:
    model = spread(dynamicvit.sparsify(tiny_vit(**kw), keep_rate=0.7)).eval()
    calibrate(model, torch.randn(32, 3, 32, 32))
    return model


def hierarchical(name: str) -> torch.nn.Module:
    kwargs = CNX if name == "convnext_tiny" else SWIN
    model = spread(dynamicvit.create_model(name, **kwargs)).eval()
    calibrate(model, torch.randn(16, 3, 64, 64))
    return model


def counts(decisions) -> list[list[int]]:
    return [[len(d) for d in stage] for stage in decisions]


@pytest.mark.parametrize("kind", ["vit", "registers", "convnext_tiny", "swin_tiny_patch4_window7_224"])
def test_an_image_output_never_depends_on_its_batch(kind):
    """Each image alone vs inside batches of 2, 7 and 32: same logits (1e-4), same kept tokens."""
    if kind in ("vit", "registers"):
        model, size = adaptive_vit(**({"reg_tokens": 2} if kind == "registers" else {})), 32
    else:
        model, size = hierarchical(kind), 64
    x = torch.randn(32, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        alone = [model.forward_with_decisions(x[i : i + 1]) for i in range(32)]
        for batch in (2, 7, 32):
            for start in range(0, 32, batch):
                out = model.forward_with_decisions(x[start : start + batch])
                for j in range(out.logits.shape[0]):
                    ref = alone[start + j]
                    torch.testing.assert_close(out.logits[j], ref.logits[0], atol=1e-4, rtol=1e-4)
                    for stage, ref_stage in zip(out.decisions, ref.decisions, strict=True):
                        assert torch.equal(stage[j].sort().values, ref_stage[0].sort().values)
    per_image = counts(model.forward_with_decisions(x).decisions)
    assert all(len(set(stage)) > 1 for stage in per_image)  # counts really differ per image


def test_threshold_rule_and_nesting():
    """Stage 1 keeps exactly the tokens whose keep probability exceeds the threshold (or the best one);
    later stages keep subsets of the earlier ones."""
    model = adaptive_vit()
    model.thresholds = [0.55, 0.5, 0.5]
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_with_decisions(x)
        tokens = model._embed(x)
        for blk in model.blocks[: model.prune_layers[0]]:
            tokens = blk(tokens)
        p = torch.sigmoid(model.score_predictor[0].keep_score(tokens[:, 1:]))
    for i in range(6):
        expected = (p[i] > 0.55).nonzero().squeeze(1)
        if not expected.numel():
            expected = p[i].argmax().view(1)
        assert torch.equal(out.decisions[0][i], expected)
        for prev, cur in zip(out.decisions, out.decisions[1:], strict=False):
            assert set(cur[i].tolist()) <= set(prev[i].tolist()) and len(cur[i]) >= 1


def test_packed_execution_equals_fixed_mode_on_the_same_kept_tokens():
    model = spread(dynamicvit.sparsify(tiny_vit(), keep_rate=0.6)).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        fixed = model.forward_with_decisions(x)
        model.keep_mode = "threshold"
        forced = [[d.sort().values for d in stage] for stage in fixed.decisions]
        packed = model(x, decisions=forced)
    torch.testing.assert_close(packed, fixed.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.promise(
    "bad input",
    "a calibration set that is too small → `calibration needs at least 8 images, got 3`; ONNX export "
    "of a per-image keep mode → `the threshold keep mode cannot be exported: each image's token "
    "count depends on its data, …`",
)
@pytest.mark.promise(
    "bad input",
    "a per-image keep mode with forced decisions of the wrong form → `forced decisions in a "
    "per-image keep mode must be, per stage, a list of 2 1-D index tensors (one per image)`",
)
@pytest.mark.promise(
    "bad input",
    "a keep mode a model or method does not have → `evit (EViTVisionTransformer) has no threshold "
    "keep mode; DynamicViT on timm ViTs and ConvNeXt/Swin has`, `unknown keep rule 'dynamic'; choose "
    "one of fixed, threshold, learned`",
)
@pytest.mark.promise(
    "bad input",
    "thresholds outside (0, 1) or of the wrong number → `thresholds must lie in (0, 1) (keep "
    "probabilities), got [0.5, 1.0, 0.2]`, `expected 3 thresholds (one per stage), got 1`",
)
def test_modes_thresholds_and_bad_input():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.7)
    assert model.keep_mode == "fixed" and model.thresholds == [0.5, 0.5, 0.5]
    model.keep_mode = "threshold"
    with pytest.raises(
        ValueError, match=r"^thresholds must lie in \(0, 1\) \(keep probabilities\), got \[0\.5, 1\.0, 0\.2\]$"
    ):
        model.thresholds = [0.5, 1.0, 0.2]
    with pytest.raises(ValueError, match=r"^expected 3 thresholds \(one per stage\), got 1$"):
        model.thresholds = [0.5]
    with pytest.raises(ValueError, match="^unknown keep rule 'dynamic'; choose one of fixed, threshold, learned"):
        model.keep_mode = "dynamic"
    evit = dynamicvit.apply_method(tiny_vit(), "evit", keep_rate=0.7)
    with pytest.raises(
        TypeError,
        match=r"^evit \(EViTVisionTransformer\) has no threshold keep mode; DynamicViT on timm ViTs and "
        "ConvNeXt/Swin has",
    ):
        evit.keep_mode = "threshold"
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(
        ValueError,
        match=r"^forced decisions in a per-image keep mode must be, per stage, a list of 2 1-D index tensors "
        r"\(one per image\)",
    ):
        model.eval()(x, decisions=[torch.zeros(2, 5, dtype=torch.long)] * 3)
    with pytest.raises(ValueError, match="nested"):
        model(x, decisions=[[torch.arange(3)] * 2, [torch.arange(5)] * 2, [torch.arange(2)] * 2])
    with pytest.raises(TypeError, match="no per-image keep mode to calibrate"):
        calibrate(tiny_vit(), torch.randn(8, 3, 32, 32))
    with pytest.raises(ValueError, match="^calibration needs at least 8 images, got 3$"):
        calibrate(model, torch.randn(3, 3, 32, 32))
    with pytest.raises(
        ValueError, match="^the threshold keep mode cannot be exported: each image's token count depends on its data"
    ):
        export_onnx(model, "/tmp/never-written.onnx")
    model.train()  # train mode is the masked Gumbel path whatever the keep mode
    out = model(x, return_decisions=True)
    assert all(d.shape == (2, 64) for d in out.decisions)


def test_calibration_meets_the_fixed_budget_on_average():
    model = spread(dynamicvit.sparsify(tiny_vit(), keep_rate=0.7)).eval()
    images = torch.randn(40, 3, 32, 32)
    r = calibrate(model, images, batch_size=16)
    assert model.keep_mode == "threshold" and model.thresholds == r["thresholds"]
    fixed = [c / 64 for c in model.keep_counts(64)]  # 44, 31, 21 of 64
    assert r["targets"] == pytest.approx(fixed)
    assert r["reached"] == pytest.approx(fixed, abs=1 / 64)
    with torch.no_grad():
        measured = [sum(s) / (40 * 64) for s in counts(model.forward_with_decisions(images).decisions)]
    assert measured == pytest.approx(r["reached"])


def test_hierarchical_slow_path_follows_the_threshold():
    """ConvNeXt: a location takes the slow path iff its probability exceeds the threshold; forcing the
    fixed mode's sets gives the fixed mode's output."""
    model = hierarchical("convnext_tiny")
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_with_decisions(x)
        score, seg = model.dynamic_stage.last_keep_scores[0]
    p = torch.sigmoid(score).view(4, -1)
    for i in range(4):
        assert set(out.decisions[0][i].tolist()) == set((p[i] > model.thresholds[0]).nonzero().squeeze(1).tolist())
    with torch.no_grad():
        model.keep_mode = "fixed"
        fixed = model.forward_with_decisions(x)
        model.keep_mode = "threshold"
        forced = model(x, decisions=[list(stage) for stage in fixed.decisions])
    torch.testing.assert_close(forced, fixed.logits, atol=1e-5, rtol=1e-5)


def test_batch_ratio_loss_averages_over_the_batch():
    masks = [torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])]  # images keep 0.5 and 1.0: the batch 0.75
    assert keep_ratio_loss(masks, [0.75], per="batch").item() == pytest.approx(0.0)
    assert keep_ratio_loss(masks, [0.75], per="image").item() == pytest.approx(0.0625)
    with pytest.raises(ValueError, match="per 'image' or per 'batch'"):
        keep_ratio_loss(masks, [0.75], per="token")


def test_per_image_accounting():
    """GMACs per image grow with the kept counts and equal a counted forward of that image alone."""
    model = adaptive_vit()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_with_decisions(x)
    per = list(zip(*counts(out.decisions), strict=True))
    gmacs = per_image_gmacs(model, per)
    small, large = min(range(6), key=lambda i: sum(per[i])), max(range(6), key=lambda i: sum(per[i]))
    assert gmacs[small] < gmacs[large]
    image = [[d[large]] for d in out.decisions]
    assert count_flops(model, decisions=image).gmacs == pytest.approx(gmacs[large])
    report = compare_flops("deit_tiny_patch16_224", keep_rate=0.7, img_size=64, keep_mode="threshold")
    tokens = report["per_image"]["tokens"]["stage 1"]
    assert report["per_image"]["images"] == 32 and tokens["p10"] <= tokens["p50"] <= tokens["p90"]
    assert tokens["mean"] == pytest.approx(11, abs=0.5)  # the fixed budget int(16 · 0.7) on average


def test_evaluate_reports_the_distribution(fake_fashion):
    from dynamicvit.data import build_dataset

    data = build_dataset("fashion-mnist", "test", data_dir=fake_fashion, limit=24)
    model = spread(dynamicvit.sparsify(tiny_vit(img_size=28, patch_size=7, in_chans=1), keep_rate=0.7)).eval()
    fixed = evaluate(model, data)
    assert fixed["per_image"]["gmacs"]["p10"] == fixed["per_image"]["gmacs"]["p90"] == fixed["gmacs"]
    calibrate(model, data)
    adaptive = evaluate(model, data)
    assert adaptive["per_image"]["images"] == 24
    assert adaptive["per_image"]["gmacs"]["mean"] == pytest.approx(adaptive["gmacs"])
    assert adaptive["gmacs"] == pytest.approx(fixed["gmacs"], rel=0.1)


@pytest.mark.promise(
    "bad input",
    "`calibrate --images 2`, `eval --thresholds 0.5 1.5 0.5` → `--images must be at least 8, got 2`, "
    "`--thresholds must lie in (0, 1) …`",
)
def test_calibrate_and_eval_commands(tmp_path, fake_fashion, capsys):
    model = spread(dynamicvit.sparsify(tiny_vit(img_size=28, patch_size=7, in_chans=1), keep_rate=0.7))
    kwargs = {"img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32, "depth": 4, "num_heads": 2}
    config = {
        "model": "vit_tiny_patch16_224",
        "model_kwargs": kwargs,
        "data": "fashion-mnist",
        "data_dir": str(fake_fashion),
    }
    trained = tmp_path / "trained.pth"
    save_checkpoint(model, trained, config=config)
    out = tmp_path / "adaptive.pth"
    assert main(["calibrate", "--checkpoint", str(trained), "--out", str(out), "--images", "32"]) == 0
    printed = capsys.readouterr().out
    assert "threshold" in printed and "reached" in printed
    assert main(["eval", "--checkpoint", str(out), "--val-limit", "16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["per_image"]["images"] == 16 and "p90" in r["per_image"]["gmacs"]
    assert main(["eval", "--checkpoint", str(out), "--val-limit", "16", "--keep-mode", "fixed", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_tokens"] == [11, 7, 5]
    assert main(["calibrate", "--checkpoint", str(trained), "--out", str(out), "--images", "32"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["calibrate", "--checkpoint", str(trained), "--out", str(tmp_path / "b.pth"), "--images", "2"]) == 2
    assert "--images must be at least 8" in capsys.readouterr().err
    bad = ["eval", "--checkpoint", str(out), "--thresholds", "0.5", "1.5", "0.5"]
    assert main(bad) == 2 and "(0, 1)" in capsys.readouterr().err


def test_variable_difficulty_canvases(fake_fashion):
    from dynamicvit.data import build_dataset

    data = build_dataset("cluttered-fashion-mnist", "train", fake_fashion, distractors=0, distractors_max=6, limit=64)
    drawn = [data.distractor_count(i) for i in range(64)]
    assert min(drawn) >= 0 and max(drawn) <= 6 and len(set(drawn)) >= 4
    again = build_dataset("cluttered-fashion-mnist", "train", fake_fashion, distractors=0, distractors_max=6, limit=64)
    assert torch.equal(data[5][0], again[5][0]) and drawn == [again.distractor_count(i) for i in range(64)]
    bright = [float((data[i][0] > data[i][0].min()).float().mean()) for i in range(64)]
    few = [b for b, d in zip(bright, drawn, strict=True) if d <= 1]
    many = [b for b, d in zip(bright, drawn, strict=True) if d >= 5]
    assert sum(many) / len(many) > sum(few) / len(few)  # more fragments, more ink


def test_padded_execution_equals_packed():
    """The benchmarks' padded alternative computes the same logits as the packed adaptive forward."""
    model = adaptive_vit()
    x = torch.randn(7, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(padded_forward(model, x), model(x), atol=1e-5, rtol=1e-5)


def test_bench_times_packed_and_padded_adaptive():
    from dynamicvit.bench.throughput import benchmark

    r = benchmark("deit_tiny_patch16_224", img_size=32, batch_size=3, warmup=1, repeats=1, keep_mode="threshold")
    assert {"sparse", "threshold", "threshold padded", "learned"} <= set(r["variants"])
    assert r["threshold_fraction_of_fixed"] > 0 and r["learned_fraction_of_fixed"] > 0
    assert r["per_image"]["images"] == 3


def test_viz_draws_per_image_counts(tmp_path):
    import numpy as np
    from PIL import Image

    from dynamicvit.frontend.viz import visualize_files

    model = adaptive_vit()
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray((np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8)).save(paths[-1])
    rows = visualize_files(model, paths, tmp_path / "kept.png")
    assert (tmp_path / "kept.png").is_file() and all(len(r["kept_tokens"]) == 3 for r in rows)
