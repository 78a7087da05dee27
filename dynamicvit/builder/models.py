"""The one place that makes a model for use: a run's dense model from its config, reduced by its method, and
the eval-mode model of a training checkpoint or of a name with no checkpoint, in the keep mode asked for.
Training, evaluation, benchmarks, export, the app and visualisation all build through it."""

from __future__ import annotations

import copy
import functools
import os

from torch import nn

from dynamicvit.config import RunConfig, default_regime, saved_defaults, trusted_config, validate
from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import backbone_of, find_reducer
from dynamicvit.core.keep import DEFAULT_MASK_RULE, KEEP_RULES
from dynamicvit.core.losses import is_encoder
from dynamicvit.methods.budget import macs_fraction, set_budget
from dynamicvit.methods.registry import apply_method, get_method
from dynamicvit.models.merged_drops import merges_drops
from dynamicvit.models.registry import build_timm_model
from dynamicvit.models.vit import has_attention_prior
from dynamicvit.tasks.registry import get_task
from dynamicvit.weights.checkpoint import (
    infer_timm_kwargs,
    is_added_key,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
)
from dynamicvit.weights.zoo import ZOO, resolve

__all__ = [
    "build_dense",
    "build_pair",
    "build_untrained",
    "configure_reducer",
    "load_trained",
    "reduce",
    "set_keep_mode",
    "trunk",
]


def build_dense(
    cfg: RunConfig,
    num_classes: int | None,
    in_chans: int,
    input_size: tuple[int, int, int] | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """The run's dense model: a timm classifier, or for ``task="segment"`` / ``"detect"`` a segmenter /
    FCOS detector on the timm backbone, taking ``input_size`` (C, H, W) images."""
    kwargs = {"in_chans": in_chans, **cfg.model.model_kwargs}
    if num_classes is not None and "num_classes" not in kwargs:  # None: the model's (pretrained) classes
        kwargs["num_classes"] = num_classes  # --model-kwargs '{"num_classes": 0}' gives an encoder
    if cfg.data.img_size is not None:
        kwargs["img_size"] = cfg.data.img_size
    make = functools.partial(build_timm_model, pretrained=pretrained)
    return get_task(cfg.model.task).build_dense(make, cfg.model.model, num_classes, input_size, **kwargs)


def reduce(model: nn.Module, cfg: RunConfig, fine_tuned: bool | None = None, **options) -> nn.Module:
    """The run's student: ``model`` reduced by ``cfg.model.method`` at ``cfg.budget.keep_rate`` (or ToMe's r); a
    segmenter's or detector's backbone is reduced in place. The method's options for a network fine-tuned with it
    (:meth:`~dynamicvit.core.interfaces.Method.regime_options`) apply when ``fine_tuned``, by default when the
    run updates the backbone."""
    target = backbone_of(model)
    tuned = default_regime(cfg) == "finetune" if fine_tuned is None else fine_tuned
    options = {**get_method(cfg.model.method).regime_options(tuned), **options}
    reduced = apply_method(
        target,
        cfg.model.method,
        keep_rate=cfg.budget.keep_rate,
        prune_layers=cfg.budget.prune_layers,
        r=cfg.model.merge_r,
        **options,
    )
    if KEEP_RULES.lookup(cfg.budget.keep_mode).needs_training:  # trained with its modules, not only run with them
        set_keep_mode(reduced, cfg.budget.keep_mode)
    configure_reducer(reduced, cfg)
    return model if target is not model else reduced


def configure_reducer(model: nn.Module, cfg: RunConfig) -> None:
    """Set the DynamicViT options of ``cfg`` on ``model``'s reducing module: the training mask rule, merged drops,
    the predictors' width and the attention prior (the last two before weights trained with them are loaded). A
    method without them refuses in one line."""
    reducer = find_reducer(model)
    if cfg.loss.mask_rule != DEFAULT_MASK_RULE:
        if not get_method(cfg.model.method).uses_mask_rule:
            raise ValueError(
                f"--mask-rule {cfg.loss.mask_rule} shapes predictor training; method {cfg.model.method} has none"
            )
        reducer.mask_mode = cfg.loss.mask_rule
    if cfg.budget.merge_dropped:
        if not merges_drops(reducer):
            raise ValueError(
                f"--merge-dropped is DynamicViT's on plain ViTs; method {cfg.model.method} does not drop tokens"
            )
        reducer.merge_dropped = True
    if cfg.budget.predictor_width != 1.0:
        if not has_attention_prior(reducer):
            raise ValueError(
                f"--predictor-width is DynamicViT's on ViTs; method {cfg.model.method} has no such predictor"
            )
        reducer.use_predictor_width(cfg.budget.predictor_width)
    if cfg.budget.attention_prior:
        if not has_attention_prior(reducer):
            raise ValueError(
                f"--attention-prior is DynamicViT's on plain ViTs; method {cfg.model.method} has no predictor"
            )
        reducer.use_attention_prior()


def load_trained(source: str | os.PathLike | dict, ema: bool = True, **overrides) -> tuple[nn.Module, RunConfig]:
    """The eval-mode model of a training checkpoint (a file, or the object read from one), rebuilt from its
    saved config (``overrides`` on top; classes and channels read off the weights), and that config.

    One rule for every command: a checkpoint with EMA weights (``--ema-decay``) gives its EMA
    weights – what training validated – unless ``ema=False`` asks for the raw ones. A file without a
    saved config (e.g. the release's) is read with ``overrides["model"]``, a timm or zoo name."""
    state = source if isinstance(source, dict) else read_checkpoint(source)
    origin = "the checkpoint" if isinstance(source, dict) else source
    saved = trusted_config(state.get("config") if isinstance(state, dict) else None, origin)
    cfg, options = _resolved({**saved_defaults(), **saved, **overrides}, overrides.get("keep_rate"))
    use_ema = ema and isinstance(state, dict) and isinstance(state.get("ema"), dict)
    weights = read_state_dict(state["ema"] if use_ema else state)
    found = infer_timm_kwargs(weights)
    chans, side = found["in_chans"], cfg.data.img_size or cfg.data.canvas
    size = (chans, side, side) if get_task(cfg.model.task).fixed_input_size else None
    model = build_dense(cfg, found["num_classes"], chans, size)
    # a learned method's modules show in the weights; the others are known from the config alone
    if any(is_added_key(k) for k in weights) or (not cfg.model.dense and not get_method(cfg.model.method).learned):
        model = reduce(model, cfg, **options)
    reducer = find_reducer(model)
    if reducer is not None and any("budget_predictor" in k.split(".") for k in weights):
        reducer.add_budget_predictors()  # trained in the learned mode; runs in any mode
    load_checkpoint(model, trunk(model, weights))
    set_keep_mode(model, cfg.budget.keep_mode, cfg.budget.thresholds)
    return model.eval(), cfg


def build_untrained(
    name: str, method: str = "dynamicvit", keep_rate: float | None = None, img_size: int | None = None, **kwargs
) -> nn.Module:
    """The eval-mode model ``name`` (timm or zoo) reduced by ``method`` (``"dense"``: not reduced), built by the
    same rules as :func:`load_trained` but from no checkpoint: a learned method's modules keep their fresh
    initialisation.

    Args:
        name: a timm model or zoo name (a zoo name brings its backbone and keep rate).
        method: a registered method, or ``"dense"``.
        keep_rate: the keep rate (default: the zoo's, else the config's default).
        img_size: input resolution (default: the model's).
        **kwargs: ``pretrained`` (timm's dense weights) and other :class:`RunConfig` fields.

    Returns:
        The model in eval mode.
    """
    pretrained = kwargs.pop("pretrained", False)
    values = {"model": name, "img_size": img_size, "dense": method == "dense", **kwargs}
    if method != "dense":
        values["method"] = method
    if keep_rate is not None:
        values["keep_rate"] = keep_rate
    cfg, options = _resolved(values, keep_rate)
    model = build_dense(cfg, None, 3, pretrained=pretrained)
    return (model if cfg.model.dense else reduce(model, cfg, fine_tuned=False, **options)).eval()


def build_pair(
    name: str, method: str = "dynamicvit", keep_rate: float | None = None, img_size: int | None = None, **kwargs
) -> tuple[nn.Module, nn.Module]:
    """The eval-mode dense model ``name`` and a copy reduced by ``method`` with the same weights: what the
    speed and cost tools compare. A method whose knob is not the keep rate (ToMe's and MCTF's ``r``) is tuned
    to the MACs DynamicViT has at ``keep_rate``, so pairs built for several methods compare them at equal cost.

    Args:
        name: a timm model or zoo name (a zoo name brings its backbone and keep rate).
        method: a registered method.
        keep_rate: the keep rate (default: the zoo's, else the config's default).
        img_size: input resolution (default: the model's).
        **kwargs: ``pretrained`` (timm's dense weights) and other :class:`RunConfig` fields
            (``model_kwargs``: ``timm.create_model`` arguments).

    Returns:
        ``(dense, reduced)``, both in eval mode.
    """
    pretrained = kwargs.pop("pretrained", False)
    values = {"model": name, "img_size": img_size, "method": method, **kwargs}
    cfg, options = _resolved(values if keep_rate is None else {**values, "keep_rate": keep_rate}, keep_rate)
    dense = build_dense(cfg.replace(dense=True), None, 3, pretrained=pretrained).eval()
    reduced = reduce(copy.deepcopy(dense), cfg, fine_tuned=False, **(options if method == "dynamicvit" else {}))
    if get_method(method).knob != "keep_rate":
        paper = reduce(copy.deepcopy(dense), cfg.replace(method="dynamicvit"), False, **options)
        dense_macs = count_flops(dense).total
        set_budget(reduced, macs_fraction(paper, dense_macs), dense_macs)
    return dense, reduced.eval()


def _resolved(values: dict, keep_rate: float | None) -> tuple[RunConfig, dict]:
    """The validated config of ``values`` with a zoo name replaced by its backbone and (unless ``keep_rate``
    is given) its keep rate, and the zoo entry's sparsify options."""
    cfg, options = RunConfig.from_dict(values), {}
    if cfg.model.model in ZOO:  # a released model: its backbone and, unless overridden, its budget
        arch, rate, options = resolve(cfg.model.model, keep_rate)
        cfg = cfg.replace(model=arch, keep_rate=rate)
    return validate(cfg, training=False), options


def trunk(model: nn.Module, weights: dict) -> dict:
    """``weights`` without the classifier when ``model`` is an encoder (``num_classes=0``): a classifier's
    checkpoint gives an encoder its trunk."""
    return {k: v for k, v in weights.items() if not k.startswith("head.")} if is_encoder(model) else weights


def set_keep_mode(model: nn.Module, mode: str, thresholds=None) -> None:
    """Put the reducing module of ``model`` in keep ``mode`` (with ``thresholds`` if given); a dense model
    has nothing to set and only takes the fixed mode."""
    reducer = find_reducer(model)
    if reducer is None:
        if KEEP_RULES.lookup(mode).per_image or thresholds is not None:
            raise ValueError("a dense model keeps every token: --keep-mode and --thresholds apply to sparse models")
        return
    reducer.keep_mode = mode
    if thresholds is not None:
        reducer.thresholds = thresholds
