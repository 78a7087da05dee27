"""Object detection on a (sparse) hierarchical backbone: torchvision's FCOS on a timm ``features_only``
ConvNeXt/Swin, its distillation objective, and COCO mAP by ``pycocotools``.

Sparsifying the backbone (:func:`dynamicvit.sparsify`) gives its third stage asymmetric computation and
keeps every feature map's shape, so the same FPN and FCOS head serve the dense and the sparse backbone –
the journal version's point (DynamicViT, arXiv 2207.01580, dense prediction). The sparse detector is
fine-tuned with FCOS's own losses, the keep-ratio term and an MSE from the dense detector's FPN features.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import time
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.ops import FeaturePyramidNetwork

from dynamicvit.core.flops import count_flops, counts_per_image
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.losses import keep_ratio_loss
from dynamicvit.core.tokens import SparseOutput, check_image_batch, in_channels, nchw_maps
from dynamicvit.data.targets import collate_detection
from dynamicvit.models.registry import keeps_maps
from dynamicvit.tasks.base import Task
from dynamicvit.tasks.logits import token_report
from dynamicvit.tasks.registry import register_task

__all__ = [
    "DetectionDistillLoss",
    "Detector",
    "FeatureBackbone",
    "build_detector",
    "coco_map",
    "detection_loss",
    "evaluate_detection",
    "targets_to",
]

LEVELS = (1, 2, 3)  # timm feature indices fed to the FPN: strides 8, 16, 32


class FeatureBackbone(nn.Module):
    """A timm ``features_only`` ConvNeXt/Swin (``body``) + torchvision's FPN: an ordered dict of
    ``out_channels``-wide NCHW maps, what torchvision's detectors take as a backbone."""

    def __init__(self, body: nn.Module, out_channels: int = 64) -> None:
        super().__init__()
        self.body = body
        self.channels = list(body.feature_info.channels())
        self.fpn = FeaturePyramidNetwork(self.channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = nchw_maps(self.body(x), self.channels)
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(maps)))


class Detector(nn.Module):
    """torchvision :class:`~torchvision.models.detection.FCOS` on a :class:`FeatureBackbone`.

    ``forward(x, targets=None, decisions=None, return_decisions=False)``: in train mode FCOS's losses
    (a dict; ``targets`` – one dict of ``boxes`` (N, 4) xyxy pixels and ``labels`` (N,) per image – are
    required), in eval mode one dict of ``boxes``/``scores``/``labels`` per image. With
    ``return_decisions`` a :class:`SparseOutput` of (that, the sparse stage's decisions, the FPN maps).
    Images are (B, C, H, W), already normalised; FCOS's transform neither resizes nor re-normalises them.
    """

    task = "detect"  # its contract: DetectTask (the trainer passes the targets to forward)
    task_model = True  # methods reduce its backbone

    def __init__(self, body: nn.Module, num_classes: int, input_size: tuple[int, int, int], width: int = 64) -> None:
        # torchvision's detection models load only when a detector is built: registering the task is free
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        super().__init__()
        chans, h, w = input_size
        strides = [int(r) for r in body.feature_info.reduction()]
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))  # FCOS: sizes = strides
        self.fcos = FCOS(
            FeatureBackbone(body, width),
            num_classes,
            min_size=min(h, w),
            max_size=max(h, w),
            image_mean=[0.0] * chans,
            image_std=[1.0] * chans,
            anchor_generator=anchors,
            score_thresh=0.05,
        )
        self.num_classes = num_classes
        self.pretrained_cfg = {"input_size": tuple(input_size)}  # what count_flops and the CLI feed it

    @property
    def backbone(self) -> nn.Module:
        """The timm features_only network (what :func:`dynamicvit.sparsify` reduces)."""
        return self.fcos.backbone.body

    def distillation_loss(
        self, teacher: nn.Module | None, target_ratios, ratio_weight: float, distill_weight: float, ratio_loss: str
    ) -> DetectionDistillLoss:
        """The sparse detector's objective (:func:`dynamicvit.build_criterion` asks the model for it)."""
        return DetectionDistillLoss(teacher, target_ratios, ratio_weight, distill_weight, ratio_loss)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The FPN maps of already normalised images (B, C, H, W)."""
        return list(self.fcos.backbone(x).values())

    def forward(
        self,
        x: torch.Tensor,
        targets: list[dict[str, torch.Tensor]] | None = None,
        decisions: list[torch.Tensor] | None = None,
        return_decisions: bool = False,
    ):
        check_image_batch(x, in_channels(self.backbone))
        if self.training and targets is None:
            raise ValueError("a detector in train mode needs targets (boxes and labels per image)")
        stage = find_reducer(self.backbone)
        if stage is None and decisions is not None:
            raise ValueError("forced decisions need a sparsified backbone")
        maps: list[OrderedDict] = []
        hook = self.fcos.backbone.register_forward_hook(lambda _m, _i, out: maps.append(out))
        try:
            with stage.forcing(decisions) if stage is not None else contextlib.nullcontext():
                out = self.fcos(list(x), targets if self.training else None)
        finally:
            hook.remove()
        if not return_decisions:
            return out
        return SparseOutput(out, stage.last_decisions if stage is not None else [], list(maps[0].values()))


def build_detector(body: nn.Module, num_classes: int, input_size: tuple[int, int, int]) -> Detector:
    """An FCOS :class:`Detector` on a timm ``features_only`` ConvNeXt/Swin built with ``out_indices``
    :data:`LEVELS`."""
    if not hasattr(body, "feature_info"):
        raise TypeError("detection needs a timm features_only backbone (build it with features_only=True)")
    return Detector(body, num_classes, input_size)


def targets_to(targets: Sequence[dict], device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [{k: v.to(device) for k, v in t.items()} for t in targets]


class DetectionDistillLoss(nn.Module):
    """FCOS's losses (classification, box regression, centre-ness) + ``ratio_weight``·keep ratio +
    ``distill_weight``·MSE between the student's and the frozen dense detector's FPN maps.

    Called like :class:`dynamicvit.DistillationLoss`: (images, the student's :class:`SparseOutput`
    in train mode, targets) → (total, detached terms)."""

    def __init__(
        self,
        teacher: nn.Module | None,
        target_ratios: Sequence[float],
        ratio_weight: float = 10.0,
        distill_weight: float = 0.5,
        ratio_loss: str = "image",
    ) -> None:
        super().__init__()
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.target_ratios = list(target_ratios)
        self.ratio_weight, self.distill_weight, self.ratio_loss = ratio_weight, distill_weight, ratio_loss

    def train(self, mode: bool = True) -> DetectionDistillLoss:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def teacher_outputs(self, inputs: torch.Tensor) -> list[torch.Tensor] | None:
        """The teacher's FPN maps of ``inputs``, computed before the student's forward to lower the peak
        memory (:meth:`dynamicvit.DistillationLoss.teacher_outputs`); ``None`` without distillation."""
        if self.teacher is None or not self.distill_weight:
            return None
        with torch.no_grad():
            return self.teacher.forward_features(inputs)

    def forward(
        self, inputs: torch.Tensor, output: SparseOutput, targets, teacher: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict]:
        """The total loss and its detached terms; ``teacher``: :meth:`teacher_outputs` of ``inputs``."""
        losses, masks, maps = output
        terms = dict(losses)
        total = sum(losses.values())
        if self.ratio_weight and masks:
            terms["ratio"] = keep_ratio_loss(masks, self.target_ratios, self.ratio_loss)
            total = total + self.ratio_weight * terms["ratio"]
        if self.teacher is not None and self.distill_weight:
            reference = self.teacher_outputs(inputs) if teacher is None else teacher
            terms["feature_mse"] = torch.stack(
                [F.mse_loss(s.float(), t.float()) for s, t in zip(maps, reference, strict=True)]
            ).mean()
            total = total + self.distill_weight * terms["feature_mse"]
        return total, {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}}


def detection_loss(losses: dict[str, torch.Tensor], _targets=None) -> torch.Tensor:
    """A dense detector's objective: the sum of FCOS's losses."""
    return sum(losses.values())


def coco_map(ground_truth: dict, detections: list[dict]) -> dict[str, float]:
    """COCO box mAP@[.5:.95] and AP50 (%) by ``pycocotools``' COCOeval.

    ``ground_truth`` is a COCO-format dict (images, annotations with bbox [x, y, w, h], categories);
    ``detections`` COCO results (image_id, category_id, bbox, score)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {"map": 0.0, "ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"map": 100.0 * max(float(stats[0]), 0.0), "ap50": 100.0 * max(float(stats[1]), 0.0)}


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    boxes = boxes.float()
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()


def _detect(model: Detector, x: torch.Tensor, counts: list[tuple[int, ...]] | None) -> list[dict]:
    """One batch's detections, appending each image's kept tokens per stage to ``counts`` (per-image keep
    modes) unless it is ``None``."""
    if counts is None:
        return model(x)
    result = model(x, return_decisions=True)
    counts.extend(counts_per_image(result.decisions))
    return result.logits


@torch.inference_mode()
def evaluate_detection(
    model: Detector, dataset, batch_size: int = 64, workers: int = 0, counts: list[tuple[int, ...]] | None = None
) -> dict:
    """COCO mAP and AP50 (%) of ``model`` on ``dataset`` (pycocotools), seconds and img/s of the whole
    detector and of its backbone alone, images; ``counts`` (a list), when given, collects each image's kept
    tokens per stage."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_detection)
    images, annotations, results = [], [], []
    seconds = backbone_seconds = 0.0
    for x, targets in loader:
        x = x.to(device)
        start = time.perf_counter()
        out = _detect(model, x, counts)
        seconds += time.perf_counter() - start
        start = time.perf_counter()
        model.backbone(x)
        backbone_seconds += time.perf_counter() - start
        for target, det in zip(targets, out, strict=True):
            image_id = len(images) + 1
            images.append({"id": image_id, "height": int(x.shape[-2]), "width": int(x.shape[-1])})
            for box, label in zip(_xywh(target["boxes"]), target["labels"].tolist(), strict=True):
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(label) + 1,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "iscrowd": 0,
                    }
                )
            for box, label, score in zip(
                _xywh(det["boxes"].cpu()), det["labels"].tolist(), det["scores"].tolist(), strict=True
            ):
                results.append({"image_id": image_id, "category_id": int(label) + 1, "bbox": box, "score": score})
    categories = [{"id": k + 1, "name": str(k)} for k in range(model.num_classes)]
    ground_truth = {"images": images, "annotations": annotations, "categories": categories}
    out = coco_map(ground_truth, results)
    model.train(was_training)
    n = len(images)
    out.update(
        images=n,
        img_per_s=n / seconds if seconds else math.nan,
        backbone_img_per_s=n / backbone_seconds if backbone_seconds else math.nan,
        detections_per_image=len(results) / max(n, 1),
    )
    return out


class DetectTask(Task):
    """Object detection: torchvision's FCOS on a ConvNeXt/Swin, FCOS's own losses, COCO mAP."""

    name = "detect"
    picture = "boxes (labelled and predicted) and slow-path locations"
    help = "torchvision FCOS on a ConvNeXt/Swin, COCO mAP"
    learns_without_labels = False  # FCOS learns from its boxes
    targets_in_forward = True

    def build_dense(self, make, name, head_classes, input_size, **kwargs) -> nn.Module:
        if not keeps_maps(make(name, **{**kwargs, "num_classes": 0})):
            raise ValueError(f"--task detect needs a ConvNeXt or Swin backbone, got {name!r}")
        return build_detector(make(name, features_only=True, out_indices=LEVELS, **kwargs), head_classes, input_size)

    def base_criterion(self):
        return detection_loss

    def batch_to(self, targets, device):
        return targets_to(targets, device)

    def check_export(self, model: nn.Module) -> None:
        raise ValueError(
            f"{type(model).__name__} returns a list of detections per image; export writes models with one "
            "logits tensor (classifiers, segmenters) – export its backbone (model.backbone) instead"
        )

    def evaluate(self, model, dataset, cfg, batch_size, decisions_fn, reference) -> dict:
        """mAP/AP50 (pycocotools), img/s of the detector and of its backbone, GMACs of both, kept locations
        (per image in a per-image keep mode, the GMACs then the mean over the images)."""
        if decisions_fn is not None:
            raise ValueError("forced token selection (e.g. random tokens) is evaluated on classifiers and segmenters")
        size = tuple(dataset[0][0].shape[-2:])
        reducer = find_reducer(model)
        counts = [] if reducer is not None and reducer.per_image else None
        out = evaluate_detection(model, dataset, batch_size, cfg.run.workers if cfg else 0, counts)
        out["backbone_gmacs"] = count_flops(model.backbone, img_size=size).gmacs
        out["gmacs"] = count_flops(model, img_size=size).gmacs
        return out | token_report(model, reducer, counts, out["gmacs"])

    def save_picture(self, model: nn.Module, dataset, path: str | os.PathLike, count: int = 4) -> None:
        from dynamicvit.draw.dense import save_detection_grid  # matplotlib only when drawing

        save_detection_grid(model, dataset, path, count)


register_task(DetectTask())
