"""What only training needs: the student and its frozen teacher, the ``--dry-run`` check of a config, and the
optimiser's parameter groups."""

from __future__ import annotations

import copy

import torch
from torch import nn

from dynamicvit.builder import build_dense, build_dense_for_data, reduce
from dynamicvit.config import RunConfig, check_teacher, validate, with_family_defaults
from dynamicvit.weights.checkpoint import is_added_key

__all__ = ["build_teacher_student", "param_groups", "resolve_config"]


def build_teacher_student(cfg: RunConfig, dataset) -> tuple[nn.Module, nn.Module | None]:
    """(model to train, frozen dense teacher or ``None`` for dense training). The student's class
    and position tokens stay frozen, as in the paper's recipe (with ``freeze_prefix``, all that runs before
    the first pruning stage)."""
    check_teacher(cfg)
    base = build_dense_for_data(cfg, dataset, pretrained=cfg.model.pretrained)
    if cfg.model.dense:
        return base, None
    teacher = copy.deepcopy(base)
    student = reduce(base, cfg)
    for name in ("cls_token", "pos_embed", "dist_token", "reg_token"):
        if isinstance(getattr(student, name, None), nn.Parameter):
            getattr(student, name).requires_grad_(False)
    if cfg.schedule.freeze_prefix:
        if not getattr(student, "shares_prefix", False):
            raise ValueError(
                f"--freeze-prefix needs DynamicViT on a timm ViT; {cfg.model.model} here is {type(student).__name__}"
            )
        student.freeze_prefix()
    return student, teacher.eval()


def resolve_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` checked as the trainer checks it and with its family defaults filled, without reading data or
    weights: the model is built and reduced on the ``meta`` device (no memory, no initialisation work), so a
    model, method or keep schedule that does not fit is reported here (``train --dry-run``)."""
    validate(cfg)
    side = cfg.data.img_size or cfg.data.canvas
    with torch.device("meta"):
        model = build_dense(cfg, None, 3, (3, side, side))
        if not cfg.model.dense:
            model = reduce(model, cfg)
    return with_family_defaults(cfg, model)


def param_groups(model: nn.Module, cfg: RunConfig) -> list[dict]:
    """New modules at full lr, backbone at ``backbone_lr_scale``; no weight decay on 1-d params."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        backbone = not cfg.model.dense and not is_added_key(name)
        no_decay = p.ndim <= 1 or name in skip
        group = groups.setdefault(
            (backbone, no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if no_decay else cfg.schedule.weight_decay,
                "lr_scale": cfg.schedule.backbone_lr_scale if backbone else 1.0,
            },
        )
        group["params"].append(p)
    return list(groups.values())
