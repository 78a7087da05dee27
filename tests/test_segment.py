import copy

import pytest
import timm
import torch
from conftest import tiny_cfg

import dynamicvit
from dynamicvit.cli import main
from dynamicvit.engine import Trainer
from dynamicvit.evaluate import evaluate_checkpoint
from dynamicvit.segment import build_segmenter, confusion_matrix, miou

SMALL = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}


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


def test_segment_needs_a_hierarchical_backbone_and_scenes(tmp_path, fake_fashion):
    with pytest.raises(ValueError, match="ConvNeXt or Swin"):
        Trainer(
            tiny_cfg(tmp_path, fake_fashion, task="segment", dense=True, data="cluttered-fashion-scenes", canvas=32)
        )
    with pytest.raises(ValueError, match="segmentation data set"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, task="segment", dense=True, model="convnext_tiny", model_kwargs=SMALL))
