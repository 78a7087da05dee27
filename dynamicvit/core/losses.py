"""DynamicViT training objective: CE + keep ratio + distillation from the dense model.

DynamicViT (arXiv 2106.02034), "Training and inference": the classification loss, a keep-ratio
term pulling each stage's kept fraction to its target, KL distillation of the class prediction
and an MSE on the final tokens the last stage kept, both from the frozen dense model. Models with a
token-labelling head (LV-ViT's ``token_logits``) distil the kept tokens' predictions by KL instead
of their features by MSE, as the release does for LV-ViT.
:func:`build_criterion` wires it for any reduced model from its method and its reducer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.predictor import check_keep_rate, cumulative_ratios
from dynamicvit.core.tokens import SparseOutput

__all__ = ["RATIO_LOSSES", "DistillationLoss", "build_criterion", "is_encoder", "keep_ratio_loss"]


RATIO_LOSSES = ("image", "batch")


def keep_ratio_loss(masks: Sequence[torch.Tensor], targets: Sequence[float], per: str = "image") -> torch.Tensor:
    """Mean over stages of (target_s − kept fraction at stage s)²: the fraction of each image, averaged
    over images (``per="image"``, the paper), or of the whole batch (``"batch"``: images may spend
    more or fewer tokens as long as the batch meets the budget – for the adaptive keep mode)."""
    if len(masks) != len(targets):
        raise ValueError(f"{len(masks)} stage masks but {len(targets)} target ratios")
    if per not in RATIO_LOSSES:
        raise ValueError(f"the keep-ratio loss is per 'image' or per 'batch', got {per!r}")
    dims = (1,) if per == "image" else (0, 1)
    terms = [((t - m.float().mean(dim=dims)) ** 2).mean() for m, t in zip(masks, targets, strict=True)]
    return torch.stack(terms).mean()


def is_encoder(model: nn.Module) -> bool:
    """Whether ``model`` is a timm encoder without a classifier (``num_classes=0``: it outputs embeddings)."""
    return getattr(model, "num_classes", None) == 0


class DistillationLoss(nn.Module):
    """``base(pred, y) + w_r·ratio + w_kl·KL(teacher‖student, class logits) + w_tok·MSE(kept tokens)``.

    Called with the images, the student's :class:`SparseOutput` (train mode, masks as
    decisions) and the targets; returns the total and a dict of detached terms. The frozen
    dense ``teacher`` runs once per call under ``no_grad``; with ``teacher=None`` only the
    base and ratio terms remain. Target ratios default to ``keep_rate**s`` per stage
    (cumulative, plain ViT); pass ``target_ratios`` for other schedules. A term whose
    weight is 0 is not computed (baselines without masks train with CE + KL only). A student whose
    reducer has ``method_loss(images, output, targets)`` (DiffRate's MACs term, MCTF's consistency) adds those
    terms.

    Args:
        teacher: the frozen dense model, or ``None`` (no distillation).
        keep_rate: ρ of the default per-stage targets ``ρ**s``.
        base_criterion: the label loss (default cross-entropy; soft-target CE under mixup).
        ratio_weight: weight of the keep-ratio term.
        distill_weight: weight of the class KL (or embedding MSE).
        token_weight: weight of the kept-token term.
        target_ratios: per-stage keep targets replacing ``ρ**s``.
        token_head: the student's token-labelling head (final tokens → per-token logits): the token term is
            then KL(teacher ‖ student) of the kept tokens' predictions, the teacher's from its own
            ``token_logits``.
        ratio_loss: ``"image"`` (the paper) or ``"batch"`` (per-image budgets).
        labels: ``False`` drops the cross-entropy: the student learns from the teacher alone (the targets
            are not read).
        embedding: for encoders without a classifier (``num_classes=0``): an MSE between the pooled
            embeddings replaces the class KL.
        student: the model being trained, when it can hand the teacher the tokens of the layers both share
            (frozen, before the first pruning stage: ``teacher_features``), so that they run once.
    """

    def __init__(
        self,
        teacher: nn.Module | None,
        keep_rate: float = 0.7,
        base_criterion: nn.Module | None = None,
        ratio_weight: float = 2.0,
        distill_weight: float = 0.5,
        token_weight: float = 0.5,
        target_ratios: Sequence[float] | None = None,
        token_head: Callable[[torch.Tensor], torch.Tensor] | None = None,
        ratio_loss: str = "image",
        labels: bool = True,
        embedding: bool = False,
        student: nn.Module | None = None,
    ) -> None:
        super().__init__()
        # a student with ``teacher_features(teacher, images)`` may share its frozen layers with the teacher
        self.teacher_features = getattr(student, "teacher_features", None)
        # a method with its own training objective (DiffRate's MACs term, MCTF's consistency): weighted terms
        self.method_loss = getattr(find_reducer(student), "method_loss", None) if student is not None else None
        self.prefix_is_fixed = getattr(student, "prefix_is_fixed", None)  # then the teacher runs after it
        self.embedding = embedding  # the outputs are embeddings (an encoder without classifier): MSE, no KL
        self.labels = labels and not embedding  # False: no cross-entropy, the targets are not read
        if ratio_loss not in RATIO_LOSSES:
            raise ValueError(f"ratio_loss must be one of {RATIO_LOSSES}, got {ratio_loss!r}")
        self.ratio_loss = ratio_loss
        if token_head is not None and not hasattr(teacher, "token_logits"):
            raise ValueError("token-label distillation needs a teacher with a token-labelling head (token_logits)")
        self.token_head = token_head
        self.keep_rate = check_keep_rate(keep_rate)
        self.target_ratios = None if target_ratios is None else [check_keep_rate(r) for r in target_ratios]
        self.teacher = teacher
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.base_criterion = base_criterion or nn.CrossEntropyLoss()
        self.ratio_weight, self.distill_weight, self.token_weight = ratio_weight, distill_weight, token_weight

    def train(self, mode: bool = True) -> DistillationLoss:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher is frozen: never dropout, never batch statistics
        return self

    def ratios(self, num_stages: int) -> list[float]:
        if self.target_ratios is not None:
            return self.target_ratios
        return cumulative_ratios(self.keep_rate, num_stages)

    def teacher_outputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The teacher's ``(logits, features)`` of ``inputs``, to compute *before* the student's forward
        and pass to :meth:`forward` as ``teacher``: its activations then come and go before the student's
        are kept for the backward pass, which lowers the step's peak memory.

        Args:
            inputs: the images the student will see.

        Returns:
            The teacher's outputs, or ``None`` without a teacher or when the student hands the teacher the
            tokens of the frozen layers they share (then :meth:`forward` runs the teacher after the student).
        """
        if self.teacher is None or (self.prefix_is_fixed is not None and self.prefix_is_fixed()):
            return None
        return self._teacher(inputs)

    def _teacher(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            if self.teacher_features is None:
                feats = self.teacher.forward_features(inputs)
            else:
                feats = self.teacher_features(self.teacher, inputs)
            return self.teacher.forward_head(feats), feats

    def forward(
        self,
        inputs: torch.Tensor,
        output: SparseOutput,
        targets: torch.Tensor,
        teacher: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total loss and its detached terms.

        Args:
            inputs: the images.
            output: the student's train-mode :class:`SparseOutput` (logits, masks, features).
            targets: the labels (not read with ``labels=False``).
            teacher: :meth:`teacher_outputs` of ``inputs``, computed before the student's forward;
                ``None`` runs the teacher here.

        Returns:
            ``(total, terms)``.
        """
        logits, masks, feats = output
        terms = {"ce": self.base_criterion(logits, targets)} if self.labels else {}
        total = terms["ce"] if self.labels else logits.new_zeros(()).float()
        extra = self.method_loss(inputs, output, targets) if self.method_loss is not None else {}
        for name, term in extra.items():
            terms[name] = term
            total = total + term
        if self.ratio_weight and masks:
            terms["ratio"] = keep_ratio_loss(masks, self.ratios(len(masks)), self.ratio_loss)
            total = total + self.ratio_weight * terms["ratio"]
        if self.teacher is not None:
            t_logits, t_feats = self._teacher(inputs) if teacher is None else teacher
            if self.embedding:  # an encoder: its pooled embedding against the dense encoder's
                terms["embed_mse"] = F.mse_loss(logits.float(), t_logits.float())
            else:
                terms["cls_kl"] = _kl(logits, t_logits)
            total = total + self.distill_weight * terms["embed_mse" if self.embedding else "cls_kl"]
            if self.token_weight and self.token_head is not None:
                student, teacher = self.token_head(feats), self.teacher.token_logits(t_feats)
                terms["token_kl"] = _kept_token_kl(student, teacher, masks[-1])
                total = total + self.token_weight * terms["token_kl"]
            elif self.token_weight:
                terms["token_mse"] = _kept_token_mse(feats, t_feats, masks[-1])
                total = total + self.token_weight * terms["token_mse"]
        terms = {"loss": total.detach(), **{k: v.detach() for k, v in terms.items()}}
        return total, terms


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) over the class dimension (1), summed over classes and averaged over
    images (and pixels, for segmentation logits (B, K, H, W)); in float32."""
    t = F.log_softmax(teacher.float(), dim=1)
    kl = (t.exp() * (t - F.log_softmax(student.float(), dim=1))).sum(dim=1)
    return kl.mean()


def _kept_token_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between student and teacher patch tokens where the last stage kept them."""
    n = mask.shape[1]
    if student.shape[1] < n or teacher.shape[1] < n or student.shape[-1] != teacher.shape[-1]:
        raise ValueError(
            f"token distillation needs full token maps: student {tuple(student.shape)}, "
            f"teacher {tuple(teacher.shape)}, mask over {n} patches"
        )
    keep = mask > 0.5
    if not keep.any():
        return student.new_zeros(())
    return F.mse_loss(student[:, -n:][keep].float(), teacher[:, -n:][keep].float())


def _kept_token_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) of per-token predictions (B, N, K) where the last stage kept the token,
    averaged over the kept tokens."""
    keep = mask > 0.5
    if not keep.any():
        return student.new_zeros(())
    return _kl(student[keep], teacher[keep])


def build_criterion(
    model: nn.Module,
    teacher: nn.Module | None,
    base_criterion: nn.Module,
    learned: bool,
    ratio_weight: float,
    distill_weight: float = 0.5,
    token_weight: float = 0.5,
    ratio_loss: str = "image",
    labels: bool = True,
) -> nn.Module:
    """The objective for a reduced ``model``: the keep-ratio term when its method ``learned`` its
    decisions (targets from the model's reducer), the token term when its final features are tokens
    aligned with the teacher's (by KL of the token-labelling head when the model has one),
    KL distillation whenever there is a ``teacher``; cross-entropy unless ``labels`` is False. A model
    with a ``distillation_loss(teacher, target_ratios, ratio_weight, distill_weight, ratio_loss)`` method
    (a detector) builds its own.

    Args:
        model: the reduced (or dense) model being trained.
        teacher: the frozen dense model to distil from, or ``None``.
        base_criterion: the classification loss (e.g. cross-entropy, or soft-target CE under mixup).
        learned: whether the model's method learns its decisions (adds the keep-ratio term).
        ratio_weight: weight of the keep-ratio term (the paper: 2 for ViTs).
        distill_weight: weight of the KL distillation term.
        token_weight: weight of the token distillation term.
        ratio_loss: ``"image"`` (per image, the paper's) or ``"batch"`` (on the batch average).
        labels: whether cross-entropy on labels is part of the objective.

    Returns:
        A module called as ``criterion(images, output, targets)`` returning ``(loss, terms)``.
    """
    reducer = find_reducer(model)
    if reducer is None:
        raise ValueError(f"{type(model).__name__} is dense; the distillation objective needs a reduced model")
    targets = reducer.keep_targets()
    own = getattr(model, "distillation_loss", None)  # a model with its own objective (detectors)
    if own is not None:
        if not labels:
            raise ValueError(f"{type(model).__name__} learns from its labelled targets; it cannot train without labels")
        return own(teacher, targets, ratio_weight if learned else 0.0, distill_weight, ratio_loss)
    distills_tokens = learned and reducer.distills_tokens
    token_head = getattr(model, "token_logits", None) if distills_tokens and teacher is not None else None
    return DistillationLoss(
        teacher,
        keep_rate=targets[0] if learned and targets else 1.0,
        base_criterion=base_criterion,
        ratio_weight=ratio_weight if learned else 0.0,
        distill_weight=distill_weight,
        token_weight=token_weight if distills_tokens else 0.0,
        target_ratios=targets if learned else None,
        token_head=token_head,
        ratio_loss=ratio_loss,
        labels=labels,
        embedding=is_encoder(model),
        student=model,
    )
