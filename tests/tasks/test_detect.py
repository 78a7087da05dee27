import copy
import json

import numpy as np
import pytest
import timm
import torch
from conftest import tiny_cfg
from PIL import Image

import dynamicvit
from dynamicvit.builder import evaluate_checkpoint
from dynamicvit.cli import main
from dynamicvit.data import ClutteredFashionDetection, CocoDetection, collate_detection
from dynamicvit.tasks import get_task
from dynamicvit.tasks.detect import LEVELS, DetectionDistillLoss, build_detector, coco_map
from dynamicvit.train.trainer import Trainer

SMALL = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}


def tiny_detector(name: str = "convnext_tiny") -> torch.nn.Module:
    kw = dict(SMALL) if "convnext" in name else dict(embed_dim=16, depths=(1, 1, 4, 1), num_heads=(1, 1, 2, 2))
    if "swin" in name:
        kw.update(img_size=64, window_size=4, drop_path_rate=0.0)  # train mode = eval mode but for the masks
    body = timm.create_model(name, features_only=True, out_indices=LEVELS, in_chans=1, **kw)
    return build_detector(body, 10, (1, 64, 64))


def test_scene_boxes_are_tight_around_each_silhouette(fake_fashion):
    data = ClutteredFashionDetection("train", fake_fashion, canvas=64, items=1, limit=8)
    for i in range(8):
        image, target = data[i]
        canvas, labels, _ = data.render_items(i)
        ys, xs = np.nonzero(labels)
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # one item: its silhouette is all labelled pixels
        assert target["boxes"].tolist() == [expected]
        assert target["labels"].tolist() == [int(labels[ys[0], xs[0]]) - 1] == [int(data.labels[i])]
    images, targets = collate_detection([data[0], data[1]])
    assert images.shape == (2, 1, 64, 64) and len(targets) == 2


def _coco_files(tmp_path, annotations, images=None):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    images = images or [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 20},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 20},
    ]
    for record in images:
        if record["file_name"] != "missing.png":
            Image.fromarray(np.full((20, 40, 3), 128, np.uint8)).save(folder / record["file_name"])
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return folder, path


def test_coco_loader_scales_boxes_maps_categories_and_allows_empty_images(tmp_path):
    ann = [{"id": 5, "image_id": 1, "category_id": 7, "bbox": [4, 2, 10, 8], "area": 80, "iscrowd": 0}]
    folder, path = _coco_files(tmp_path, ann)
    data = CocoDetection(folder, path, img_size=32)
    assert len(data) == 2 and data.num_classes == 2 and data.class_names == ("cat", "dog")
    image, target = data[0]
    assert image.shape == (3, 32, 32)
    assert target["boxes"][0].tolist() == pytest.approx([4 * 0.8, 2 * 1.6, 14 * 0.8, 10 * 1.6])  # 40x20 -> 32x32
    assert target["labels"].tolist() == [1]  # category 7 is the second id
    assert data[1][1]["boxes"].shape == (0, 4)  # an image without boxes is fine


@pytest.mark.promise(
    "bad input",
    "a malformed COCO annotation file → `COCO annotation 9 of image D/a.png (image id 1): box [x, y, "
    "w, h] = [30, 2, 20, 5] lies outside the 40x20 image` (also a non-positive size, an unknown "
    "category id, a missing image file)",
)
@pytest.mark.parametrize(
    "annotation, image, message",
    [
        ({"bbox": [30, 2, 20, 5], "category_id": 3}, None, "annotation 9 .*a.png.*outside the 40x20 image"),
        ({"bbox": [1, 2, -3, 5], "category_id": 3}, None, "annotation 9 .*non-positive size"),
        ({"bbox": [1, 2, 3, 5], "category_id": 4}, None, "annotation 9 .*unknown category id 4"),
        ({"bbox": [1, 2, 3, 5], "category_id": 3}, "missing.png", "missing.png \\(image id 1\\): no such file"),
    ],
)
def test_coco_loader_names_the_bad_record(tmp_path, annotation, image, message):
    images = [{"id": 1, "file_name": image or "a.png", "width": 40, "height": 20}]
    folder, path = _coco_files(tmp_path, [{"id": 9, "image_id": 1, "iscrowd": 0, "area": 1, **annotation}], images)
    with pytest.raises(ValueError, match=message):
        CocoDetection(folder, path)


def test_coco_map_by_pycocotools():
    truth = {
        "images": [{"id": 1, "width": 64, "height": 64}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    exact = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]
    assert coco_map(truth, exact) == {"map": pytest.approx(100.0), "ap50": pytest.approx(100.0)}
    shifted = [{"image_id": 1, "category_id": 1, "bbox": [14, 10, 20, 20], "score": 0.9}]  # IoU 0.67
    result = coco_map(truth, shifted)
    assert result["ap50"] == pytest.approx(100.0) and 0 < result["map"] < 100
    wrong_class = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20], "score": 0.9}]
    assert coco_map(truth, wrong_class)["map"] == 0.0 and coco_map(truth, [])["map"] == 0.0


@pytest.mark.parametrize("name", ["convnext_tiny", "swin_tiny_patch4_window7_224"])
def test_sparse_detector_same_kept_set_same_features_in_train_and_eval(name):
    dense = tiny_detector(name).eval()
    sparse = copy.deepcopy(dense)
    dynamicvit.sparsify(sparse.backbone, keep_rate=0.7)
    x = torch.randn(3, 1, 64, 64)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}] * 3
    with torch.no_grad():
        evaluated = sparse.eval()(x, return_decisions=True)
        every = [torch.arange(16).expand(3, 16)] * 3  # every location on the slow path: the dense detector
        assert torch.allclose(sparse.forward_features(x)[0], sparse(x, return_decisions=True).features[0])
        same = sparse(x, decisions=every)
        reference = dense(x)
    for a, b in zip(same, reference, strict=True):
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-4) and torch.equal(a["labels"], b["labels"])
    masks = [torch.zeros(3, 16).scatter(1, d, 1.0) for d in evaluated.decisions]
    trained = sparse.train()(x, targets=targets, decisions=masks, return_decisions=True)
    assert set(trained.logits) == {"classification", "bbox_regression", "bbox_ctrness"}
    for a, b in zip(trained.features, evaluated.features, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    assert [d.shape[1] for d in evaluated.decisions] == [11, 8, 4]  # 4x4 stage-3 map at 64x64
    for det in evaluated.logits:
        assert det["boxes"].shape[1] == 4 and (det["boxes"] >= 0).all() and (det["boxes"] <= 64).all()


def test_detector_in_the_adaptive_mode_is_batch_invariant_and_costs_per_image(fake_fashion):
    """A calibrated detector keeps each image's own slow-path locations: an image's boxes do not depend on
    its batch, and evaluation reports mAP with each image's kept tokens and MACs (their mean as its GMACs)."""
    from dynamicvit.data import build_dataset
    from dynamicvit.tasks.evaluate import evaluate

    torch.manual_seed(0)
    model = tiny_detector().eval()
    dynamicvit.sparsify(model.backbone, keep_rate=0.7)
    with torch.no_grad():
        for p in dynamicvit.find_reducer(model).score_predictor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    data = build_dataset("cluttered-fashion-boxes", "test", fake_fashion, canvas=64, limit=12, scene_items=1,
                         scene_items_max=6)  # fmt: skip
    calibration = build_dataset("cluttered-fashion-boxes", "train", fake_fashion, canvas=64, limit=16, scene_items=1,
                                scene_items_max=6)  # fmt: skip
    assert dynamicvit.calibrate(model, calibration)["images"] == 16  # boxes of varying count per scene batch
    x = torch.stack([data[i][0] for i in range(4)])
    with torch.no_grad():
        together = model(x, return_decisions=True)
        alone = [model(x[i : i + 1])[0] for i in range(4)]
    assert len({len(d) for d in together.decisions[-1]}) > 1  # the images keep different counts
    for a, b in zip(together.logits, alone, strict=True):
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-4) and torch.equal(a["labels"], b["labels"])
    r = evaluate(model, data)
    assert r["per_image"]["images"] == 12 and 0 <= r["map"] <= 100
    assert r["gmacs"] == pytest.approx(r["per_image"]["gmacs"]["mean"])
    assert r["per_image"]["gmacs"]["p90"] > r["per_image"]["gmacs"]["p10"]


def test_detection_distillation_terms():
    dense = tiny_detector()
    student = copy.deepcopy(dense)
    dynamicvit.sparsify(student.backbone, keep_rate=0.7)
    x = torch.randn(2, 1, 64, 64)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([2])}] * 2
    loss = DetectionDistillLoss(dense, [0.7, 0.5, 0.3], ratio_weight=10.0, distill_weight=0.5)
    every = [torch.ones(2, 16)] * 3  # all slow: the student computes what the teacher does
    total, terms = loss(x, student.train()(x, targets=targets, decisions=every, return_decisions=True), targets)
    assert {"classification", "bbox_regression", "bbox_ctrness", "ratio", "feature_mse"} <= set(terms)
    assert terms["feature_mse"] < 1e-8  # identical backbones: no feature difference
    assert terms["ratio"] == pytest.approx(((0.3**2) + (0.5**2) + (0.7**2)) / 3)
    total.backward()
    assert student.backbone.stages_2.blocks[1].mlp.fc1.weight.grad is not None
    half = [torch.cat([torch.ones(2, 8), torch.zeros(2, 8)], 1)] * 3
    with torch.no_grad():  # fast path on half the locations: the features move away from the teacher's
        student.backbone.stages_2.blocks[1].fast_path.gamma.fill_(1.0)
        _, moved = loss(x, student(x, targets=targets, decisions=half, return_decisions=True), targets)
    assert moved["feature_mse"] > 1e-6


def test_train_and_eval_detect_dense_and_sparse(tmp_path, fake_fashion, capsys):
    common = dict(
        task="detect",
        model="convnext_tiny",
        model_kwargs=SMALL,
        data="cluttered-fashion-boxes",
        canvas=64,
        img_size=None,
        keep_rate=0.6,
    )
    Trainer(tiny_cfg(tmp_path, fake_fashion, name="dense", dense=True, epochs=1, **common)).fit()
    teacher = tmp_path / "dense" / "last.pth"
    record = Trainer(
        tiny_cfg(tmp_path, fake_fashion, name="sparse", teacher_checkpoint=str(teacher), epochs=1, **common)
    ).fit()
    assert {"train_classification", "train_ratio", "train_feature_mse", "val_map", "val_ap50"} <= set(record)
    dense, sparse = evaluate_checkpoint(teacher), evaluate_checkpoint(tmp_path / "sparse" / "last.pth")
    assert sparse["map"] == pytest.approx(record["val_map"])
    assert sparse["backbone_gmacs"] < dense["backbone_gmacs"] and sparse["gmacs"] < dense["gmacs"]
    assert sparse["kept_tokens"] == [9, 6, 3]  # 4x4 stage-3 map, ratios 0.6 / 0.4 / 0.2
    assert main(["eval", "--checkpoint", str(teacher), "--json"]) == 0
    assert '"ap50"' in capsys.readouterr().out
    picture = tmp_path / "boxes.png"
    assert main(["eval", "--checkpoint", str(tmp_path / "sparse" / "last.pth"), "--picture", str(picture)]) == 0
    assert picture.stat().st_size > 0
    capsys.readouterr()
    bench = ["bench", "--checkpoints", str(teacher), str(tmp_path / "sparse" / "last.pth"), "--batch-size", "2"]
    assert main([*bench, "--repeats", "1", "--warmup", "0", "--json"]) == 0
    timed = json.loads(capsys.readouterr().out)
    assert set(timed["img_per_s"]) == {"dense", "sparse", "dense backbone", "sparse backbone"}
    assert timed["gmacs"]["sparse backbone"] == pytest.approx(sparse["backbone_gmacs"])
    assert main(["export", "--checkpoint", str(teacher), "--onnx", str(tmp_path / "d.onnx")]) == 2
    assert "export its backbone" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(teacher), "--random"]) == 2
    adaptive = tmp_path / "adaptive.pth"  # per-image slow-path locations, set on held-out scenes by the CLI
    assert main(["calibrate", "--checkpoint", str(tmp_path / "sparse" / "last.pth"), "--out", str(adaptive)]) == 0
    assert main(["eval", "--checkpoint", str(adaptive), "--json"]) == 0
    out = capsys.readouterr().out
    per_image = json.loads(out[out.index("{\n") :])["per_image"]
    last = per_image["tokens"]["stage 3"]
    assert per_image["images"] == sparse["images"] and last["p90"] > last["p10"]  # each scene its own count


@pytest.mark.promise(
    "bad input",
    "a task and a data set that do not go together → `--task detect needs --data "
    "cluttered-fashion-boxes or coco; --data cluttered-fashion-mnist is a classify set (--task "
    "classify)`, `--task detect needs a ConvNeXt or Swin backbone, got 'dvit_tiny_fmnist'`",
)
def test_detect_needs_a_hierarchical_backbone_and_box_data(tmp_path, fake_fashion):
    with pytest.raises(ValueError, match="needs a ConvNeXt or Swin backbone"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, task="detect", dense=True, data="cluttered-fashion-boxes", canvas=28))
    with pytest.raises(ValueError, match="--task detect needs --data cluttered-fashion-boxes or coco"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, task="detect", dense=True, model="convnext_tiny", img_size=None))
    with pytest.raises(ValueError, match="--data cluttered-fashion-boxes is a detect set \\(--task detect\\)"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, data="cluttered-fashion-boxes", canvas=28))


@pytest.mark.promise(
    "bad input",
    "ONNX export of a detector → `Detector returns a list of detections per image; export writes "
    "models with one logits tensor (classifiers, segmenters) – export its backbone (model.backbone) "
    "instead`",
)
def test_export_refuses_a_detector_in_one_line(tmp_path):
    """A detector returns one dict of boxes per image: export refuses it before writing anything."""
    with pytest.raises(ValueError, match="Detector returns a list of detections per image; export"):
        dynamicvit.export_onnx(tiny_detector().eval(), tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()


@pytest.mark.promise(
    "bad input",
    "random tokens on a detector → `forced token selection (e.g. random tokens) is evaluated on "
    "classifiers and segmenters`",
)
def test_forced_token_selection_is_refused_on_a_detector():
    """Random-token baselines score logits; a detector returns boxes, so forcing its selection is refused."""
    with pytest.raises(
        ValueError, match=r"^forced token selection \(e\.g\. random tokens\) is evaluated on classifiers"
    ):
        get_task("detect").evaluate(tiny_detector().eval(), [], None, 1, lambda *_: None, None)
