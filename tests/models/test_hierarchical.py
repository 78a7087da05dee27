import copy

import pytest
import timm
import torch
from conftest import tiny_cfg
from timm.models.convnext import ConvNeXt
from timm.models.swin_transformer import SwinTransformer

import dynamicvit
from dynamicvit.bench.flops_report import compare_flops
from dynamicvit.builder import evaluate_checkpoint
from dynamicvit.core.flops import count_flops
from dynamicvit.models.hierarchical import FastPath
from dynamicvit.train.trainer import Trainer


def tiny_convnext(**kw):
    return ConvNeXt(depths=(1, 1, 4, 1), dims=(8, 16, 32, 48), num_classes=10, **kw)


def tiny_swin(**kw):
    args = dict(img_size=64, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1, 4, 1), num_heads=(1, 1, 2, 2))
    return SwinTransformer(num_classes=10, drop_path_rate=0.0, **{**args, **kw})


FAMILIES = {
    "convnext": (tiny_convnext, (64, 64)),
    "swin": (tiny_swin, (64, 64)),
    "convnext-odd": (tiny_convnext, (96, 64)),
}


def _masks(decisions, n):
    return [torch.zeros(d.shape[0], n).scatter(1, d, 1.0) for d in decisions]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch", [1, 3])
def test_train_blend_equals_eval_gather_scatter(family, batch):
    """One contract: the same hard mask gives the same output in both modes."""
    build, size = FAMILIES[family]
    model = dynamicvit.sparsify(build(), keep_rate=0.8).eval()
    for m in model.modules():  # make the fast path matter
        if isinstance(m, FastPath):
            torch.nn.init.normal_(m.gamma, std=0.5)
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        evaluated = model.forward_with_decisions(x)
        n = model.dynamic_stage.last_locations
        model.train()
        blended = model.forward_with_decisions(x, decisions=_masks(evaluated.decisions, n))
    assert [d.shape[1] for d in evaluated.decisions] == [int(n * r + 1e-6) for r in (0.8, 0.6, 0.4)]
    assert torch.allclose(blended.logits, evaluated.logits, atol=1e-4)
    assert blended.features.shape == evaluated.features.shape


@pytest.mark.parametrize("family", ["convnext", "swin"])
def test_train_mode_masks_and_gradients(family):
    model = dynamicvit.sparsify(FAMILIES[family][0](), keep_rate=0.7).train()
    out = model.forward_with_decisions(torch.randn(2, 3, 64, 64))
    assert all(set(d.unique().tolist()) <= {0.0, 1.0} for d in out.decisions)
    out.logits.sum().backward()
    stage = model.dynamic_stage
    assert stage.score_predictor[0].in_conv[1].weight.grad is not None
    assert stage.blocks[1].fast_path.fc.weight.grad is not None
    assert not hasattr(stage.blocks[0], "fast_path")  # before the first predictor every block is dense


@pytest.mark.parametrize("build", [tiny_convnext, tiny_swin])
def test_features_only_keep_their_shapes(build):
    kw = {"img_size": 64} if build is tiny_swin else {}
    name = "swin_tiny_patch4_window7_224" if build is tiny_swin else "convnext_tiny"
    small = dict(depths=(1, 1, 4, 1))
    if build is tiny_swin:
        small.update(embed_dim=16, num_heads=(1, 1, 2, 2), window_size=4)
    else:
        small.update(dims=(8, 16, 32, 48))
    dense = timm.create_model(name, features_only=True, **small, **kw).eval()
    sparse = dynamicvit.sparsify(copy.deepcopy(dense), keep_rate=0.7).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = dense(x), sparse(x)
    assert [f.shape for f in a] == [f.shape for f in b]
    assert dense.feature_info.reduction() == [4, 8, 16, 32]
    assert torch.allclose(a[1], b[1]) and not torch.allclose(a[2], b[2])  # only stage 3 changes


@pytest.mark.parametrize(
    "name,rate,expected",
    [("convnext_tiny", 0.9, 3.9), ("convnext_tiny", 0.7, 3.6), ("swin_tiny_patch4_window7_224", 0.7, 4.0)],
)
def test_paper_flops(name, rate, expected):
    r = compare_flops(name, keep_rate=rate)
    assert abs(r["dense"]["gmacs"] - 4.5) < 0.1
    assert abs(r["sparse"]["gmacs"] - expected) < 0.1


def test_flops_fall_with_the_keep_rate():
    dense = tiny_convnext().eval()
    macs = [
        count_flops(dynamicvit.sparsify(copy.deepcopy(dense), keep_rate=r), img_size=64).total for r in (1.0, 0.8, 0.6)
    ]
    assert macs[0] > macs[1] > macs[2]


def test_bad_schedules_and_inputs():
    with pytest.raises(ValueError, match="leave no locations"):
        dynamicvit.sparsify(tiny_convnext(), keep_rate=0.3)  # 0.3 - 0.4 < 0
    with pytest.raises(ValueError, match="must not increase"):
        dynamicvit.sparsify(tiny_convnext(), keep_ratios=[0.5, 0.7, 0.3])
    with pytest.raises(ValueError, match="prune_layers"):
        dynamicvit.sparsify(tiny_convnext(), prune_layers=[2, 1, 3])
    with pytest.raises(TypeError, match="not supported"):
        dynamicvit.sparsify(timm.create_model("resnet18"))
    with pytest.raises(TypeError, match="ConvNeXt/Swin models only"):
        dynamicvit.sparsify(timm.create_model("vit_tiny_patch16_224"), keep_ratios=[0.7])
    swin = dynamicvit.sparsify(tiny_swin(img_size=80, window_size=4, strict_img_size=False)).eval()
    with pytest.raises(ValueError, match="windows do not divide"):
        swin(torch.randn(1, 3, 80, 80))  # stage-3 map 5x5, windows 4x4
    swin = dynamicvit.sparsify(tiny_swin()).eval()
    with pytest.raises(ValueError, match="built for 64x64"):
        swin(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="NaN"):
        dynamicvit.sparsify(tiny_convnext()).eval()(torch.full((1, 3, 64, 64), float("nan")))


@pytest.mark.parametrize("build", [tiny_convnext, tiny_swin])
def test_bf16_autocast_is_finite(build):
    model = dynamicvit.sparsify(build()).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(torch.randn(2, 3, 64, 64)).float()).all()


def test_engine_trains_convnext_with_family_defaults(tmp_path, fake_fashion):
    small = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}
    common = dict(model="convnext_tiny", model_kwargs=small, data="cluttered-fashion-mnist", canvas=32, img_size=None)
    Trainer(tiny_cfg(tmp_path, fake_fashion, name="teacher", dense=True, epochs=1, **common)).fit()
    trainer = Trainer(
        tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(tmp_path / "teacher" / "last.pth"), epochs=1, **common)
    )
    assert (
        trainer.cfg.loss.ratio_weight == 10.0 and trainer.cfg.schedule.backbone_lr_scale == 0.2
    )  # the journal version's recipe
    assert trainer.criterion.ratios(3) == [0.7, 0.5, 0.3]
    scales = {id(p): g["lr_scale"] for g in trainer.optimizer.param_groups for p in g["params"]}
    stage = trainer.model.dynamic_stage
    assert scales[id(stage.blocks[1].fast_path.fc.weight)] == 1.0 and scales[id(stage.blocks[1].mlp.fc1.weight)] == 0.2
    record = trainer.fit()
    assert "train_ratio" in record and "train_token_mse" not in record
    result = evaluate_checkpoint(tmp_path / "run" / "last.pth")
    assert result["top1"] == record["val_top1"] and result["loss"] == pytest.approx(record["val_loss"])
    assert result["kept_tokens"] == record["val_kept_tokens"] == stage.keep_counts(stage.last_locations)


def test_fresh_predictors_start_at_the_absolute_ratios():
    model = dynamicvit.sparsify(tiny_convnext(), keep_rate=0.8).train()
    masks = model.forward_with_decisions(torch.randn(32, 3, 64, 64)).decisions
    for m, r in zip(masks, (0.8, 0.6, 0.4), strict=True):
        assert abs(m.mean().item() - r) < 0.06
