"""What the rest of the package asks of a backbone family and of a token-reduction method.

* :class:`TokenReducer` – the protocol of every sparsified module (a reduced ViT, the sparsified
  stage of a ConvNeXt/Swin): the method that reduces it, its per-stage keep targets and token
  counts, and the grid its decisions index. Losses, FLOPs, visualisation and evaluation read
  these and never branch on the family.
* :class:`Family` – a registry entry for a backbone family (``dynamicvit.models.FAMILIES``).
* :class:`Method` – a registry entry for a token-reduction method (``dynamicvit.methods.METHODS``):
  its knob, whether it exports, accepts forced decisions, or learns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from dynamicvit.core.keep import DEFAULT_KEEP_MODE, DEFAULT_MASK_RULE, KEEP_RULES, MASK_RULES, KeepRule, MaskRule

__all__ = ["FAMILY_DEFAULTED", "Family", "Method", "TokenReducer", "check_thresholds", "find_reducer"]

FAMILY_DEFAULTED = ("ratio_weight", "backbone_lr_scale")  # recipe fields a config leaves None for its Family


class TokenReducer:
    """Mixed into every module that reduces tokens; read through :func:`find_reducer`.

    Decisions index a grid of ``h × w`` tokens (ViT patches, or the locations of a ConvNeXt/Swin
    stage).

    Attributes:
        method: the registry name of the reducing method.
        distills_tokens: whether the final features are tokens aligned with the dense model's (token
            distillation applies).
        supports_adaptive: whether it has the packed per-image eval forward (per-image keep rules).
        supports_learned: whether it can add budget predictors (the learned keep mode).
        last_grid: the token grid of the latest forward.
        keep_mode: the eval forward's keep rule by name (settable); ``mask_mode`` the training mask rule's.
        explore: whether the training mask rule adds its exploration noise (the trainer turns it off once
            the backbone trains, with ``mask_noise="frozen"``).
    """

    method: ClassVar[str]  # registry name of the reducing method
    distills_tokens: ClassVar[bool] = False  # final features are tokens aligned with the dense model's
    supports_adaptive: ClassVar[bool] = False  # has the packed per-image eval forward (per-image keep rules)
    supports_learned: ClassVar[bool] = False  # has budget predictors (add_budget_predictors)
    last_grid: tuple[int, int] = (0, 0)
    _keep_rule: KeepRule = KEEP_RULES[DEFAULT_KEEP_MODE]
    _mask_rule: MaskRule = MASK_RULES[DEFAULT_MASK_RULE]
    _thresholds: list[float] | None = None
    explore: bool = True  # the training mask rule adds its exploration noise (off: the top-k rule keeps exact)

    @property
    def keep_mode(self) -> str:
        """The name of the keep rule of the eval forward (:data:`dynamicvit.core.keep.KEEP_RULES`): the fixed
        schedule's count for every image (the paper), a threshold per stage, or learned per-image counts
        (setting it adds the budget predictors once). Settable."""
        return self._keep_rule.name

    @keep_mode.setter
    def keep_mode(self, mode: str) -> None:
        rule = KEEP_RULES.lookup(mode)
        if not rule.supported_by(self):
            raise TypeError(f"{self.method} ({type(self).__name__}) has no {mode} keep mode; {rule.owners}")
        rule.prepare(self)
        self._keep_rule = rule

    @property
    def keep_rule(self) -> KeepRule:
        """The keep rule :attr:`keep_mode` names."""
        return self._keep_rule

    @property
    def mask_rule(self) -> MaskRule:
        """The training forward's mask rule (:data:`dynamicvit.core.keep.MASK_RULES`); set it by name with
        :attr:`mask_mode`."""
        return self._mask_rule

    @property
    def mask_mode(self) -> str:
        """The name of the training forward's mask rule: ``gumbel`` (the paper) or ``topk`` (the inference
        count). Settable; inference does not read it."""
        return self._mask_rule.name

    @mask_mode.setter
    def mask_mode(self, name: str) -> None:
        self._mask_rule = MASK_RULES.lookup(name)

    @property
    def per_image(self) -> bool:
        """Whether the keep rule gives each image its own count."""
        return self._keep_rule.per_image

    def add_budget_predictors(self) -> None:
        """Add the learned mode's budget predictors (once); models with ``supports_learned`` implement it."""
        raise NotImplementedError

    @property
    def thresholds(self) -> list[float]:
        """Per-stage keep-probability thresholds of the adaptive mode (0.5 – the training-time decision –
        until set or calibrated). Settable."""
        return list(self._thresholds) if self._thresholds is not None else [0.5] * len(self.keep_targets())

    @thresholds.setter
    def thresholds(self, values) -> None:
        self._thresholds = check_thresholds(values, len(self.keep_targets()))

    def keep_targets(self) -> list[float]:
        """Fraction of the grid's tokens each stage keeps (the keep-ratio loss targets)."""
        raise NotImplementedError

    def token_counts(self, num_tokens: int | None = None) -> list[int]:
        """Tokens alive after each reduction step for an input of ``num_tokens`` grid tokens."""
        raise NotImplementedError

    def grid_for(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """The decision grid (h, w) for an input of ``image_size`` pixels."""
        raise NotImplementedError

    @property
    def last_tokens(self) -> int:
        """Tokens of the decision grid in the latest forward."""
        return self.last_grid[0] * self.last_grid[1]


def check_thresholds(thresholds, num_stages: int) -> list[float]:
    """One keep-probability threshold per stage, each in (0, 1); otherwise a clear error."""
    try:
        values = [float(t) for t in thresholds]
    except (TypeError, ValueError):
        raise ValueError(f"thresholds must be a list of numbers in (0, 1), got {thresholds!r}") from None
    if len(values) != num_stages:
        raise ValueError(f"expected {num_stages} thresholds (one per stage), got {len(values)}")
    if any(not 0.0 < t < 1.0 for t in values):
        raise ValueError(f"thresholds must lie in (0, 1) (keep probabilities), got {values}")
    return values


def find_reducer(model: nn.Module) -> TokenReducer | None:
    """The token-reducing module inside ``model`` (itself, a sparsified stage, a segmenter's backbone), if any.

    Args:
        model: any module.

    Returns:
        The first :class:`TokenReducer` among ``model``'s modules, or ``None`` for a dense model.
    """
    return next((m for m in model.modules() if isinstance(m, TokenReducer)), None)


def backbone_of(model: nn.Module) -> nn.Module:
    """The network a method reduces: a segmenter's or detector's ``backbone`` (they mark themselves with
    ``task_model = True``), else ``model`` itself."""
    return model.backbone if getattr(model, "task_model", False) else model


@dataclass(frozen=True)
class Family:
    """A backbone family :func:`dynamicvit.sparsify` knows, and its training recipe defaults.

    Attributes:
        name: the family's name.
        supported: what the family accepts, for error messages.
        recognises: whether a model belongs to the family.
        sparsify: ``(model, keep_rate, prune_layers, **options) -> model``, in place.
        ratio_weight: the keep-ratio loss weight of the papers' recipe.
        backbone_lr_scale: the backbone's learning rate relative to the new modules'.
        options: extra keyword arguments ``sparsify`` takes.
        keeps_maps: a hierarchical backbone whose sparse model keeps the feature maps dense heads read.
        segments_tokens: a plain ViT: a segmenter reads its tokens put back on the patch grid.
    """

    name: str
    supported: str  # what the family accepts, for error messages
    recognises: Callable[[nn.Module], bool]
    sparsify: Callable[..., nn.Module]  # (model, keep_rate, prune_layers, **options) -> model, in place
    ratio_weight: float  # keep-ratio loss weight of the papers' recipe
    backbone_lr_scale: float  # backbone learning rate relative to the new modules'
    options: tuple[str, ...] = ()  # extra keyword arguments ``sparsify`` takes
    keeps_maps: bool = False  # a hierarchical backbone: its sparse model keeps the feature maps dense heads read
    segments_tokens: bool = False  # a plain ViT: a segmenter reads its tokens put back on the patch grid


class Method:
    """A token-reduction method as the registry knows it; subclasses set the class attributes.

    Attributes:
        name: the registry name (``--method``).
        label: the name in tables and plots.
        knob: the model attribute that sets the budget (``keep_rate``, or ``tome_r``/``mctf_r``).
        knob_label: the knob's name in tables.
        exportable: no run-time randomness: ONNX export works.
        accepts_decisions: ``forward(x, decisions=...)`` forces its choices.
        learned: it adds parameters that must be trained (predictors, rates): it trains in every regime.
        keeps_subset: its decisions are kept indices (else tokens are mixtures of patches).
        uses_mask_rule: its training masks follow a mask rule (``--mask-rule``).
        apply_options: the keyword options of :meth:`apply` beyond the knob (e.g. ToMe's ``prop_attn``).
        summary: what it does, in one line (the documentation's table of methods).
        paper: its paper's arXiv id, or ``""`` for a baseline of this library.
        per_image: images keep different numbers of tokens (by default; DynamicViT's per-image keep modes are
            options).
    """

    name: ClassVar[str]
    label: ClassVar[str]  # for tables and plots
    summary: ClassVar[str]
    paper: ClassVar[str] = ""
    per_image: ClassVar[bool] = False
    knob: ClassVar[str] = "keep_rate"  # the model attribute that sets the budget
    knob_label: ClassVar[str] = "keep_rate"
    exportable: ClassVar[bool] = True  # no run-time randomness: ONNX export works
    accepts_decisions: ClassVar[bool] = False  # ``forward(x, decisions=...)`` forces its choices
    learned: ClassVar[bool] = False  # adds modules that must be trained (predictors): keep-ratio loss applies
    keeps_subset: ClassVar[bool] = True  # decisions are kept indices (else tokens are mixtures of patches)
    uses_mask_rule: ClassVar[bool] = False  # its training masks follow a mask rule (--mask-rule)
    apply_options: ClassVar[tuple[str, ...]] = ()  # keyword options of apply() beyond the knob

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **options) -> nn.Module:
        """Reduce ``model`` in place with this method and return it (options it does not use are ignored)."""
        raise NotImplementedError

    @classmethod
    def short_label(cls) -> str:
        """The label without its gloss in parentheses (``ToMe``), for messages and narrow tables."""
        return cls.label.split(" (")[0]

    @classmethod
    def macs_fraction(cls, model: nn.Module, dense_macs: int) -> float | None:
        """The fraction of ``dense_macs`` that ``model`` costs when that is not what a forward counts (a method
        whose cost is only known after training reports its target); ``None``: count it on a forward.

        Args:
            model: the reduced model.
            dense_macs: the dense model's MACs.

        Returns:
            The fraction, or ``None``.
        """
        return None

    @classmethod
    def regime_options(cls, fine_tuned: bool) -> dict[str, Any]:
        """Options of :meth:`apply` that the method's authors set differently for a network fine-tuned with the
        method (``fine_tuned``) than for one used as it was trained (ToMe's proportional attention, PPT's
        threshold, MCTF's consistency loss); the model builder passes them.

        Args:
            fine_tuned: whether the run updates (or updated) the backbone with the method in place.

        Returns:
            Keyword options for :meth:`apply`.
        """
        return {}

    @classmethod
    def searched(cls, model: nn.Module) -> dict[str, Any]:
        """What a trained ``model`` of this method settled on that its knob does not say (DiffRate's searched
        counts), for result files; nothing by default."""
        return {}

    @classmethod
    def load_searched(cls, model: nn.Module, searched: dict[str, Any]) -> None:
        """Put what :meth:`searched` recorded back into a freshly reduced ``model`` (its cost then follows the
        trained one's); nothing by default."""

    @classmethod
    def authors_recipe(cls, cfg: Any) -> dict[str, Any]:
        """Optimisation settings the method's authors train it with, as overrides of a comparison's shared
        recipe ``cfg`` (a :class:`~dynamicvit.config.RunConfig`); none by default.

        Args:
            cfg: the shared recipe.

        Returns:
            Config fields to replace.
        """
        return {}

    @classmethod
    def knob_range(cls, model: nn.Module) -> tuple[float, float]:
        """(value with the fewest MACs, value with the most MACs) of the knob."""
        return 1e-3, 1.0
