"""Checks of a run configuration before any work: value ranges naming the flag, what a checkpoint's saved
config may hold, the teacher a sparse run distils from, the family defaults, and what may change on resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
from torch import nn

from dynamicvit.config.fields import FORMER_KEYS, RunConfig, config_fields, field_key, flag
from dynamicvit.core.files import CheckpointError
from dynamicvit.core.interfaces import FAMILY_DEFAULTED, backbone_of
from dynamicvit.core.keep import KEEP_RULES, MASK_RULES
from dynamicvit.data.registry import get_dataset
from dynamicvit.data.transforms import check_auto_augment
from dynamicvit.methods.registry import METHODS
from dynamicvit.models.registry import family_of
from dynamicvit.tasks.registry import get_task
from dynamicvit.weights.zoo import ZOO

__all__ = [
    "RESUMABLE_CHANGES",
    "changed_settings",
    "check_resumable",
    "check_teacher",
    "trusted_config",
    "validate",
    "with_family_defaults",
]


# timm.create_model arguments that load files, reach the network or change what is built beyond the
# architecture: refused in a config read from a checkpoint
_UNSAFE_MODEL_KWARGS = frozenset(
    {
        "checkpoint_path",
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "pretrained_strict",
        "cache_dir",
        "features_only",
        "scriptable",
        "exportable",
    }
)


def _declared_rules() -> list[tuple[str, Callable[[Any], bool], str]]:
    """Each field's range as declared with it (``option(..., valid=(test, what))``), in declaration order."""
    return [(field_key(f), *f.metadata["valid"]) for _, f in config_fields() if "valid" in f.metadata]


def validate(cfg: RunConfig, training: bool = True) -> RunConfig:
    """Raise a ``ValueError`` naming the flag of the first value out of range; return ``cfg``.
    With ``training`` also check that a sparse run has a teacher to distil from."""
    for name, ok, what in _declared_rules():
        value = cfg.get(name)
        if value is not None and not ok(value):
            raise ValueError(f"{flag(name)} must be {what}, got {value}")
    task = get_task(cfg.model.task)
    if cfg.budget.keep_mode not in KEEP_RULES:
        raise ValueError(f"--keep-mode must be one of {', '.join(KEEP_RULES)}, got {cfg.budget.keep_mode!r}")
    if cfg.loss.mask_rule not in MASK_RULES:
        raise ValueError(f"--mask-rule must be one of {', '.join(MASK_RULES)}, got {cfg.loss.mask_rule!r}")
    if cfg.loss.mask_noise != "always" and cfg.loss.mask_rule != "topk":
        raise ValueError(f"--mask-noise {cfg.loss.mask_noise} applies to --mask-rule topk (the Gumbel rule draws)")
    if cfg.model.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {cfg.model.method!r}")
    cfg.data_options("train").check(flag)  # the data set's own options together
    if cfg.augment.aa is not None:
        check_auto_augment(cfg.augment.aa)
    if cfg.budget.thresholds is not None and any(not 0 < t < 1 for t in cfg.budget.thresholds):
        raise ValueError(f"--thresholds must lie in (0, 1) (keep probabilities), got {cfg.budget.thresholds}")
    if cfg.loss.no_labels and cfg.model.dense:
        raise ValueError("--no-labels trains a sparse model from a dense one; --dense training needs labels")
    if cfg.loss.no_labels and not task.learns_without_labels:
        raise ValueError(f"--no-labels does not apply to --task {task.name} (it learns from its targets)")
    if cfg.schedule.freeze_prefix and (cfg.model.dense or cfg.model.method != "dynamicvit"):
        raise ValueError("--freeze-prefix applies to DynamicViT training (--method dynamicvit, not --dense)")
    if training and not get_dataset(cfg.data.dataset).labelled and not cfg.loss.no_labels:
        raise ValueError(
            f"--data {cfg.data.dataset} has no labels: pass --no-labels (distil from the dense model alone)"
        )
    if (
        training
        and KEEP_RULES.lookup(cfg.budget.keep_mode).needs_training
        and not cfg.model.dense
        and cfg.loss.ratio_loss != "batch"
    ):
        raise ValueError(
            f"--keep-mode {cfg.budget.keep_mode} trains each image's own budget: the keep-ratio term must act on the "
            "batch average (add --ratio-loss batch)"
        )
    if training:
        check_teacher(cfg)
    return cfg


def trusted_config(saved: Any, source: object) -> dict:
    """The config dict a checkpoint file carries, checked before anything is built from it: only known
    fields of plain values; a model name timm or this package registers (no ``hf-hub:`` / ``local-dir:``
    sources); ``model_kwargs`` of plain architecture values, none that loads files or reaches the network.
    The numeric bounds are :func:`validate`'s. A ``ValueError`` names the entry and ``source``."""
    if not isinstance(saved, dict):
        return {}
    known = set(RunConfig().to_dict()) | set(FORMER_KEYS)
    config = {k: v for k, v in saved.items() if k in known}
    for key, value in config.items():
        if not _plain(value):
            raise ValueError(f"{source}: config entry {key!r} is not a plain value")
    model = config.get("model")
    if model is not None and (not isinstance(model, str) or ":" in model or not _registered(model)):
        raise ValueError(f"{source}: config names model {model!r}, which timm and dynamicvit do not register")
    kwargs = config.get("model_kwargs", {})
    nested = isinstance(kwargs, dict) and any(isinstance(v, dict) for v in kwargs.values())
    if not isinstance(kwargs, dict) or set(kwargs) & _UNSAFE_MODEL_KWARGS or nested:
        raise ValueError(f"{source}: config model_kwargs {kwargs!r} hold more than architecture values")
    return config


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def _registered(name: str) -> bool:
    return name in ZOO or timm.is_model(name)


def check_teacher(cfg: RunConfig) -> None:
    """Raise unless a sparse run has a dense model to distil from (and its checkpoint file exists)."""
    if not cfg.model.dense and not (cfg.model.pretrained or cfg.model.teacher_checkpoint):
        raise ValueError(
            "sparse training distils from a trained dense model: pass --pretrained or "
            "--teacher-checkpoint (make one with `dynamicvit train --dense`)"
        )
    if cfg.model.teacher_checkpoint and not Path(cfg.model.teacher_checkpoint).is_file():
        raise ValueError(f"--teacher-checkpoint {cfg.model.teacher_checkpoint}: no such file")


def with_family_defaults(cfg: RunConfig, model: nn.Module) -> RunConfig:
    """``cfg`` with the recipe values left unset filled from the model's family."""
    family = family_of(backbone_of(model))
    ratio, scale = cfg.loss.ratio_weight, cfg.schedule.backbone_lr_scale
    return cfg.replace(
        ratio_weight=family.ratio_weight if ratio is None else ratio,
        backbone_lr_scale=family.backbone_lr_scale if scale is None else scale,
    )


# Config fields that may differ when a run is resumed: more epochs re-plan the cosine schedule
# from the current update on; the others do not change what is computed.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "resume", "overwrite", "progress", "workers", "out_dir", "data_dir", "max_bad_steps", "compile"}
)


def changed_settings(saved: dict, cfg: RunConfig) -> list[str]:
    """What ``cfg`` sets otherwise than the saved flat config ``saved`` (``"lr 0.001 -> 0.002"``), leaving out
    what a resumed run may change (:data:`RESUMABLE_CHANGES`) and fields ``cfg`` leaves to the family
    defaults; a field ``saved`` lacks is newer than it, and counts as what the code did before it
    (:meth:`RunConfig.from_saved`)."""
    now, before = cfg.to_dict(), RunConfig.from_saved(saved).to_dict()
    return [
        f"{k} {before[k]!r} -> {v!r}"
        for k, v in now.items()
        if k not in RESUMABLE_CHANGES and v != before[k] and not (v is None and k in FAMILY_DEFAULTED)
    ]


def check_resumable(state: dict, cfg: RunConfig, path) -> None:
    """Raise unless ``state`` is a training checkpoint whose saved config matches ``cfg`` (fields left
    ``None`` in ``cfg`` take the saved value, as they would from the family defaults; fields the saved
    config lacks, added to :class:`RunConfig` after it was written, count as their defaults)."""
    keys = set(state) if isinstance(state, dict) else set()
    missing = {"model", "optimizer", "scheduler", "epoch", "rng", "config"} - keys
    if missing:
        raise CheckpointError(f"--resume: {path} is not a training checkpoint (no {sorted(missing)})")
    changed = changed_settings(state["config"], cfg)
    if changed:
        raise ValueError(
            f"{path} was written with another configuration ({'; '.join(changed)}); resume with the same "
            "settings (only epochs may grow), or start a new run with another --out or --overwrite"
        )
