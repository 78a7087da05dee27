"""What a keep rule is and the registry of them.

A *keep rule* decides how many, and which, of a stage's tokens each image keeps in the eval forward
(``TokenReducer.keep_mode`` names one); a *mask rule* decides the training forward's keep masks. Each rule is
one module of :mod:`dynamicvit.core.keep` and one registry entry; what a rule supports is said by its
attributes, which the command line, calibration, benchmarks, the app and the FLOPs report read instead of
comparing names.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dynamicvit.core.registry import Registry

__all__ = ["KEEP_RULES", "MASK_RULES", "KeepRule", "MaskRule", "calibrated_rule", "untrained_rules"]


class KeepRule:
    """A keep rule: subclasses set the class attributes and, when ``per_image``, implement :meth:`image_keep`.

    Attributes:
        name: the ``--keep-mode`` value.
        help: one line for the command line's help.
        per_image: each image keeps its own count (the packed eval forward runs it); else the schedule's count.
        hierarchical: ConvNeXt/Swin stages (asymmetric computation) have it, besides plain ViTs.
        onnx: a model in this mode exports to ONNX.
        needs_training: it adds modules that must be trained with the model (not offered for untrained models);
            training asks the keep-ratio term on the batch average.
        calibrated: :func:`dynamicvit.calibrate` fits its settings to a target mean cost.
        owners: the models that have it, for the error a model without it raises.
    """

    name: ClassVar[str]
    help: ClassVar[str]
    per_image: ClassVar[bool] = False
    hierarchical: ClassVar[bool] = True
    onnx: ClassVar[bool] = True
    needs_training: ClassVar[bool] = False
    calibrated: ClassVar[bool] = False
    owners: ClassVar[str] = "DynamicViT models have"

    def supported_by(self, reducer: Any) -> bool:
        """Whether ``reducer`` (a :class:`~dynamicvit.core.interfaces.TokenReducer`) can run this rule."""
        if self.per_image and not reducer.supports_adaptive:
            return False
        return not self.needs_training or reducer.supports_learned

    def prepare(self, reducer: Any) -> None:
        """Called when ``reducer`` is put in this mode (e.g. to add the modules the rule reads)."""

    def budget_at(self, reducer: Any, stage: int) -> nn.Module | None:
        """The module that gives stage ``stage``'s per-image counts in the training forward, if the rule has one."""
        return None

    def image_keep(
        self,
        reducer: Any,
        stage: int,
        score: torch.Tensor,
        seg: torch.Tensor,
        tokens: torch.Tensor,
        num_images: int,
        budgets: list,
    ) -> torch.Tensor:
        """A per-image rule's (T,) bool keep mask of packed tokens of ``num_images`` images: ``score`` (T,) their
        keep log-odds, ``seg`` (T,) their image, ``tokens`` (T, C) their features; a rule that records
        calibration data appends it to ``budgets``."""
        raise NotImplementedError

    def fitter(self, reducer: Any) -> Any:
        """A calibrated rule's fitter of ``reducer``'s settings (``fit``, ``kept``, ``result``; see
        :func:`dynamicvit.calibrate`)."""
        raise NotImplementedError


class MaskRule:
    """A training rule: how the training forward turns a stage's keep log-probabilities into a hard keep mask.

    Attributes:
        name: the rule's name.
        help: one line for the command line's help.
    """

    name: ClassVar[str]
    help: ClassVar[str]

    def mask(self, log_probs: torch.Tensor, alive: torch.Tensor, count: int, explore: bool = True) -> torch.Tensor:
        """The (B, N) keep mask of ``log_probs`` (B, N, 2) (keep, drop), nested in ``alive`` (B, N); ``count``
        is the tokens the stage keeps at inference (the fixed mode's schedule); ``explore``: whether a rule
        with exploration noise adds it (the reducer's :attr:`~dynamicvit.core.interfaces.TokenReducer.explore`)."""
        raise NotImplementedError


KEEP_RULES: Registry[KeepRule] = Registry("keep rule")
MASK_RULES: Registry[MaskRule] = Registry("mask rule")


def untrained_rules() -> tuple[str, ...]:
    """The keep rules a model without trained extra modules can run (commands that build untrained models)."""
    return tuple(name for name, rule in KEEP_RULES.items() if not rule.needs_training)


def calibrated_rule(current: KeepRule) -> KeepRule:
    """The rule :func:`dynamicvit.calibrate` fits: ``current`` when it is calibrated, else the first
    registered calibrated rule that needs no training."""
    if current.calibrated:
        return current
    return next(r for r in KEEP_RULES.values() if r.calibrated and not r.needs_training)
