import copy

import pytest
import timm
import torch
from conftest import tiny_cfg

import dynamicvit
from dynamicvit.builder import evaluate_checkpoint
from dynamicvit.cli import main
from dynamicvit.tasks.segment import build_segmenter, confusion_matrix, miou
from dynamicvit.train.trainer import Trainer

SMALL = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}
TINY_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 4, "num_heads": 2}


def test_miou_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 2, 2, 0]])
    conf = confusion_matrix(pred, target, 3)
    assert conf.sum() == 8 and conf[0, 1] == 1 and conf[2, 0] == 1
    # IoU: class 0 1/3, class 1 2/3, class 2 3/4
    assert abs(miou(conf) - 100 * (1 / 3 + 2 / 3 + 3 / 4) / 3) < 1e-9


@pytest.mark.parametrize("name", ["convnext_tiny", "swin_tiny_patch4_window7_224"])
def test_segmenter_sparse_backbone_keeps_shapes(name):
    kw = dict(SMALL) if "convnext" in name else dict(embed_dim=16, depths=(1, 1, 4, 1), num_heads=(1, 1, 2, 2))
    if "swin" in name:
        kw.update(img_size=64, window_size=4)
    dense = build_segmenter(timm.create_model(name, features_only=True, **kw), 11, (3, 64, 64)).eval()
    sparse = copy.deepcopy(dense)
    dynamicvit.sparsify(sparse.backbone, keep_rate=0.7)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = dense(x), sparse.eval()(x, return_decisions=True)
        every = [torch.arange(16).expand(2, 16)] * 3  # every location on the slow path: the dense computation
        assert torch.allclose(sparse(x, decisions=every), a, atol=1e-5)
    assert a.shape == b.logits.shape == (2, 11, 64, 64)
    assert [d.shape[1] for d in b.decisions] == [11, 8, 4]  # 4x4 stage-3 map, ratios 0.7/0.5/0.3
    with pytest.raises(ValueError, match="NaN"):
        sparse(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="NaN"):
        dense(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="channels"):
        sparse.backbone(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="NaN"):
        sparse.backbone(torch.full((1, 3, 64, 64), float("nan")))


def test_train_and_eval_segment_dense_and_sparse(tmp_path, fake_fashion, capsys):
    common = dict(
        task="segment",
        model="convnext_tiny",
        model_kwargs=SMALL,
        data="cluttered-fashion-scenes",
        canvas=32,
        img_size=None,
    )
    Trainer(tiny_cfg(tmp_path, fake_fashion, name="dense", dense=True, epochs=1, **common)).fit()
    teacher = tmp_path / "dense" / "last.pth"
    record = Trainer(
        tiny_cfg(tmp_path, fake_fashion, name="sparse", teacher_checkpoint=str(teacher), epochs=1, **common)
    ).fit()
    assert {"train_ce", "train_ratio", "train_cls_kl"} <= set(record) and "val_miou" in record
    dense, sparse = evaluate_checkpoint(teacher), evaluate_checkpoint(tmp_path / "sparse" / "last.pth")
    assert sparse["miou"] == pytest.approx(record["val_miou"]) and sparse["backbone_gmacs"] < dense["backbone_gmacs"]
    assert sparse["kept_tokens"] == [2, 2, 1]  # 2x2 stage-3 map at 32x32
    assert main(["eval", "--checkpoint", str(teacher), "--json"]) == 0
    assert '"miou"' in capsys.readouterr().out
    picture = tmp_path / "masks.png"
    assert main(["eval", "--checkpoint", str(tmp_path / "sparse" / "last.pth"), "--picture", str(picture)]) == 0
    assert picture.stat().st_size > 0


def test_segment_needs_a_supported_backbone_and_scenes(tmp_path, fake_fashion):
    with pytest.raises(ValueError, match="ConvNeXt, Swin or plain ViT"):
        Trainer(
            tiny_cfg(
                tmp_path,
                fake_fashion,
                task="segment",
                dense=True,
                data="cluttered-fashion-scenes",
                canvas=32,
                model="resnet18",
                model_kwargs={},
                img_size=None,
            )
        )
    with pytest.raises(ValueError, match="--task segment needs --data cluttered-fashion-scenes"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, task="segment", dense=True, model="convnext_tiny", model_kwargs=SMALL))


def _tiny_vit_backbone(**kw):
    return timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2, num_classes=0, **kw
    )


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_restored_tokens_same_kept_set_same_map_in_train_and_eval(reg_tokens):
    vit = dynamicvit.sparsify(_tiny_vit_backbone(reg_tokens=reg_tokens), keep_rate=0.6, prune_layers=[1, 2, 3]).eval()
    x = torch.randn(3, 3, 32, 32)
    full, decisions = vit.forward_restored(x)
    assert full.shape == (3, 64, 32) and [d.shape[1] for d in decisions] == [38, 23, 13]
    kept = vit.forward_features(x)[:, vit.num_prefix_tokens :]  # the eval forward's final (kept) tokens
    assert torch.equal(full.gather(1, decisions[-1][..., None].expand(-1, -1, 32)), kept)
    masks = [torch.zeros(3, 64).scatter(1, d, 1.0) for d in decisions]
    trained, _ = vit.train().forward_restored(x, masks)
    assert torch.allclose(trained, full, atol=1e-5)
    # a token dropped at the first stage keeps its features from before that stage's block, normalised
    with torch.no_grad():
        h = vit._embed(x)
        h = vit.blocks[0](h)
        early = vit.norm(h[:, vit.num_prefix_tokens :])
    dropped = torch.ones(3, 64, dtype=torch.bool).scatter(1, decisions[0], False)
    assert torch.allclose(full[dropped], early[dropped], atol=1e-5)
    alone = torch.stack([vit.eval().forward_restored(x[i : i + 1])[0][0] for i in range(3)])
    assert torch.allclose(alone, full, atol=1e-5)  # an image's map does not depend on its batch


@pytest.mark.parametrize("mode", ["threshold", "learned"])
def test_restored_tokens_in_the_per_image_modes(mode):
    """Packed restoration: with each image's kept set forced to the fixed mode's, the per-image mode restores
    the fixed mode's map; its own per-image counts give an image the same map alone as in its batch."""
    vit = dynamicvit.sparsify(_tiny_vit_backbone(), keep_rate=0.6, prune_layers=[1, 2, 3]).eval()
    with torch.no_grad():
        for p in vit.score_predictor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        fixed, decisions = vit.forward_restored(x)
        vit.keep_mode = mode
        if mode == "learned":
            for p in vit.budget_predictor.parameters():
                p.add_(0.5 * torch.randn_like(p))
        else:
            dynamicvit.calibrate(vit, torch.randn(16, 3, 32, 32))
        forced = [list(d) for d in decisions]
        same, _ = vit.forward_restored(x, forced)
        torch.testing.assert_close(same, fixed, atol=1e-5, rtol=1e-5)
        full, kept = vit.forward_restored(x)
        assert len({len(k) for k in kept[-1]}) > 1  # counts differ per image
        alone = torch.cat([vit.forward_restored(x[i : i + 1])[0] for i in range(4)])
        torch.testing.assert_close(alone, full, atol=1e-5, rtol=1e-5)
        for i, index in enumerate(kept[-1]):  # a kept token's features are the packed forward's final ones
            final = vit.forward_sparse(x[i : i + 1])[0][0, vit.num_prefix_tokens :]
            torch.testing.assert_close(full[i, index.sort().values], final, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backbone", ["vit", "convnext"])
def test_segmenters_evaluate_per_image_budgets(backbone, fake_fashion):
    """A segmenter in a per-image keep mode (the ViT's learned budgets with restoration, ConvNeXt's
    thresholds) reports mIoU with each image's kept tokens and MACs."""
    from dynamicvit.data import build_dataset
    from dynamicvit.tasks.evaluate import evaluate

    scenes = build_dataset("cluttered-fashion-scenes", "test", fake_fashion, canvas=32, limit=12)
    if backbone == "vit":
        model = build_segmenter(_tiny_vit_backbone(in_chans=1), 11, (1, 32, 32))
        dynamicvit.sparsify(model.backbone, keep_rate=0.6, prune_layers=[1, 2, 3])
        model.backbone.keep_mode = "learned"
        spread = [*model.backbone.score_predictor.parameters(), *model.backbone.budget_predictor.parameters()]
    else:
        cnx = timm.create_model("convnext_tiny", depths=(1, 1, 4, 1), dims=(8, 16, 32, 32), in_chans=1,
                                features_only=True)  # fmt: skip
        model = build_segmenter(cnx, 11, (1, 32, 32))
        dynamicvit.sparsify(model.backbone, keep_rate=0.7)
        spread = list(dynamicvit.find_reducer(model).score_predictor.parameters())
    with torch.no_grad():
        for p in spread:
            p.add_(0.5 * torch.randn_like(p))
    if backbone == "convnext":
        dynamicvit.calibrate(model, torch.randn(16, 1, 32, 32))
    r = evaluate(model.eval(), scenes)
    assert r["per_image"]["images"] == 12 and 0 <= r["miou"] <= 100
    assert r["per_image"]["gmacs"]["p90"] > r["per_image"]["gmacs"]["p10"]  # images cost differently


def test_vit_segmenter_dense_and_restored_sparse():
    dense = build_segmenter(_tiny_vit_backbone(), 11, (3, 32, 32)).eval()
    sparse = copy.deepcopy(dense)
    dynamicvit.sparsify(sparse.backbone, keep_rate=0.7, prune_layers=[1, 2, 3])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        every = [torch.arange(64).expand(2, 64)] * 3  # keep every token: the dense segmenter
        assert torch.allclose(sparse.eval()(x, decisions=every), dense(x), atol=1e-5)
        out = sparse(x, return_decisions=True)
    assert out.logits.shape == (2, 11, 32, 32) and out.features.shape == (2, 64, 32)
    assert not torch.allclose(out.logits, dense(x), atol=1e-3)  # tokens really were dropped
    with pytest.raises(TypeError, match="evit drops tokens without restoring them"):
        evit = copy.deepcopy(dense)
        dynamicvit.apply_method(evit.backbone, "evit", keep_rate=0.7)
        evit(x)


def test_train_and_eval_segment_with_a_plain_vit(tmp_path, fake_fashion):
    common = dict(task="segment", data="cluttered-fashion-scenes", canvas=32, img_size=32, model_kwargs=TINY_VIT)
    Trainer(tiny_cfg(tmp_path, fake_fashion, name="dense", dense=True, epochs=1, **common)).fit()
    teacher = tmp_path / "dense" / "last.pth"
    record = Trainer(
        tiny_cfg(tmp_path, fake_fashion, name="sparse", teacher_checkpoint=str(teacher), epochs=1, **common)
    ).fit()
    assert {"train_ce", "train_ratio", "train_cls_kl", "train_token_mse", "val_miou"} <= set(record)
    dense, sparse = evaluate_checkpoint(teacher), evaluate_checkpoint(tmp_path / "sparse" / "last.pth")
    assert sparse["miou"] == pytest.approx(record["val_miou"]) and sparse["backbone_gmacs"] < dense["backbone_gmacs"]
    assert sparse["kept_tokens"] == [44, 31, 21]  # 8x8 patches of 4 pixels, rho 0.7
