import pytest
import timm
from conftest import tiny_vit

import dynamicvit
from dynamicvit.bench.flops_report import compare_flops
from dynamicvit.core.flops import count_flops


def analytic_vit_macs(c, depth, patches, prefix, patch_area, classes, prune_layers=(), counts=(), mlp_ratio=4):
    """Hand count: patch conv, per block qkv/proj/mlp + QK^T and AV, predictors, head."""
    macs = patches * c * 3 * patch_area + c * classes
    n = patches
    stage_of = dict(zip(prune_layers, counts, strict=True))
    for i in range(depth):
        if i in stage_of:
            half = c // 2
            # eval scores with one output (keep minus drop logit), not two
            macs += n * (c * c + half * half + half * (c // 4) + c // 4) + half * half
            n = stage_of[i]
        t = n + prefix
        macs += t * (4 * c * c + 2 * mlp_ratio * c * c) + 2 * t * t * c
    return macs


def test_dense_count_matches_hand_count():
    model = tiny_vit()
    assert count_flops(model).total == analytic_vit_macs(32, 4, 64, 1, 16, 10)


@pytest.mark.parametrize("keep_rate", [0.9, 0.5])
def test_sparse_count_matches_hand_count(keep_rate):
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=keep_rate)
    report = count_flops(model)
    assert report.total == analytic_vit_macs(32, 4, 64, 1, 16, 10, model.prune_layers, model.keep_counts())
    assert sum(report.parts.values()) == report.total and "other" not in report.parts
    assert report.tokens == {"input": 64, **{f"stage {s + 1}": k for s, k in enumerate(model.keep_counts())}}


def test_counting_leaves_training_mode_alone():
    model = dynamicvit.sparsify(tiny_vit()).train()
    count_flops(model)
    assert model.training


@pytest.mark.parametrize("keep_rate,gmacs", [(1.0, 4.6), (0.9, 4.0), (0.8, 3.4), (0.7, 2.9)])
def test_deit_small_reproduces_paper(keep_rate, gmacs):
    """arXiv 2106.02034, Table 1: DeiT-S 4.6 → 4.0 / 3.4 / 2.9 GFLOPs (MACs) at rho 0.9 / 0.8 / 0.7."""
    model = (
        timm.create_model("deit_small_patch16_224")
        if keep_rate == 1.0
        else dynamicvit.create_model("deit_small_patch16_224", keep_rate=keep_rate)
    )
    assert count_flops(model).gmacs == pytest.approx(gmacs, abs=0.1)


@pytest.mark.parametrize(
    "name,keep_rate,dense,sparse", [("lvvit_s", 0.7, 6.6, 4.6), ("lvvit_s", 0.5, 6.6, 3.7), ("lvvit_m", 0.7, 12.7, 8.5)]
)
def test_lvvit_reproduces_paper(name, keep_rate, dense, sparse):
    """arXiv 2106.02034, Table 1 / the release's zoo: LV-ViT-S 6.6 → 4.6 (rho 0.7) / 3.7 (0.5), LV-ViT-M
    12.7 → 8.5 GMACs."""
    report = compare_flops(name, keep_rate=keep_rate)
    assert report["dense"]["gmacs"] == pytest.approx(dense, abs=0.1)
    assert report["sparse"]["gmacs"] == pytest.approx(sparse, abs=0.1)


def test_deit_base_exact_count():
    """Paper 11.2 G, release README 11.4 G; we count 11.41 G: 11.06 G backbone + 0.35 G predictors."""
    report = compare_flops("deit_base_patch16_224", keep_rate=0.7)
    assert report["dense"]["gmacs"] == pytest.approx(17.56, abs=0.01)
    assert report["sparse"]["gmacs"] == pytest.approx(11.41, abs=0.01)
    assert report["sparse"]["parts"]["predictors"] / 1e9 == pytest.approx(0.35, abs=0.01)


def test_compare_groups_dense_blocks_like_sparse_stages():
    r = compare_flops("deit_tiny_patch16_224", keep_rate=0.7, img_size=64)
    assert [p for p in r["dense"]["parts"] if p.startswith("blocks")] == [
        "blocks 0-2",
        "blocks 3-5",
        "blocks 6-8",
        "blocks 9-11",
    ]
    assert r["dense"]["parts"]["blocks 0-2"] == r["sparse"]["parts"]["blocks 0-2"]
    assert 0.5 < r["ratio"] < 0.8
