"""State dicts in the layouts of DynamicViT's release and of the original backbones, in this package's names.

DynamicViT's release (arXiv 2106.02034; T-PAMI version arXiv 2207.01580) saves its models in the
names of the code they were built on:

* ViTs (DeiT, DeiT-256, LV-ViT): timm-0.3 names, which are timm's today, plus
  ``score_predictor.{k}.in_conv/out_conv`` (Linear layers) – loaded as they are (timm's ViT filter
  still resamples position embeddings for other input sizes);
* DynamicCNN: the original ConvNeXt names (``downsample_layers.*``, ``stages.i.j.dwconv``,
  ``pwconv1/2``, ``gamma``, ``norm``, ``head``), predictors at the top level
  (``score_predictor.{k}``) made of 1×1 convolutions with (C_out, C_in, 1, 1) weights, and in the
  third stage's blocks from the first prediction on ``fast_path.0`` (LayerNorm) / ``fast_path.1``
  (Linear) and ``fast_path_gamma``;
* DynamicSwin: the original Swin names (``layers.i.blocks.j``, relative position tables, patch
  merging at the end of a stage), predictors ``layers.2.score_predictor.{k}`` (Linear) and a fast path
  ``fastmlp.fc1.0`` (LayerNorm) / ``fastmlp.fc1.1`` (Linear) without a scale.

The backbone names go through timm's own converters for the original ConvNeXt and Swin files; the
added modules are mapped here onto the sparsified stage (:class:`dynamicvit.core.interfaces.TokenReducer`).
A Swin fast path has no scale in the release, so its ``gamma`` is set to ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.models.convnext import ConvNeXt
from timm.models.convnext import checkpoint_filter_fn as convnext_filter
from timm.models.swin_transformer import SwinTransformer
from timm.models.swin_transformer import checkpoint_filter_fn as swin_filter
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter
from torch import nn

from dynamicvit.core.registry import Registry

__all__ = ["LAYOUTS", "Layout", "convert_state_dict", "is_release_convnext", "is_release_swin", "register_layout"]

State = dict[str, torch.Tensor]


def is_release_convnext(state: State) -> bool:
    """Whether ``state`` is in the original ConvNeXt layout (DynamicCNN's release included)."""
    return "downsample_layers.0.0.weight" in state


def is_release_swin(state: State) -> bool:
    """Whether ``state`` is in the original Swin layout (DynamicSwin's release included)."""
    return "layers.0.downsample.reduction.weight" in state


def _stage_prefix(model: nn.Module) -> str | None:
    """Name of the sparsified stage inside ``model`` (``stages.2``, ``layers.2``: the module that owns the
    predictors), or None if dense."""
    return next((name for name, m in model.named_modules() if "score_predictor" in m._modules), None)


def _split(state: State, added: re.Pattern) -> tuple[State, State]:
    """(backbone entries, entries of modules sparsification adds)."""
    extra = {k: v for k, v in state.items() if added.match(k)}
    return {k: v for k, v in state.items() if k not in extra}, extra


_CONVNEXT_ADDED = re.compile(r"(score_predictor\.|stages\.\d+\.\d+\.fast_path)")
_CONVNEXT_FAST = {
    "fast_path.0.": "fast_path.norm.",
    "fast_path.1.": "fast_path.fc.",
    "fast_path_gamma": "fast_path.gamma",
}
_SWIN_ADDED = re.compile(r"layers\.\d+\.(score_predictor\.|blocks\.\d+\.fastmlp\.)")
_SWIN_FAST = {"fastmlp.fc1.0.": "fast_path.norm.", "fastmlp.fc1.1.": "fast_path.fc."}


def _rename(name: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        name = name.replace(old, new)
    return name


def _convert(state: State, model: nn.Module, added: re.Pattern, backbone_filter, place) -> State:
    """Backbone entries through timm's converter ``backbone_filter``; each entry of an added module
    moved by ``place(key, value, stage) -> {name: tensor}`` onto the sparsified stage (names kept
    for a dense model: the strict load then reports them)."""
    backbone, extra = _split(state, added)
    out = backbone_filter(backbone, model)
    stage = _stage_prefix(model)
    for key, value in extra.items():
        out.update({key: value} if stage is None else place(key, value, stage))
    return out


def _place_convnext(key: str, value: torch.Tensor, stage: str) -> State:
    if key.startswith("score_predictor."):  # top level, 1×1 convs → the stage's Linear predictors
        return {f"{stage}.{key}": value.flatten(1) if value.dim() == 4 else value}
    block, rest = key.split(".", 3)[2:]  # stages.i.j.fast_path* → <stage>.blocks.j.fast_path.*
    return {f"{stage}.blocks.{block}.{_rename(rest, _CONVNEXT_FAST)}": value}


def _place_swin(key: str, value: torch.Tensor, stage: str) -> State:
    rest = _rename(key.split(".", 2)[2], _SWIN_FAST)  # without "layers.i."
    out = {f"{stage}.{rest}": value}
    if rest.endswith("fast_path.fc.bias"):  # the release's Swin fast path has no scale
        out[f"{stage}.{rest[: -len('fc.bias')]}gamma"] = torch.ones_like(value)
    return out


@dataclass(frozen=True)
class Layout:
    """A saved layout of one backbone family's weights that loading converts to this package's names.

    Attributes:
        name: its name in :data:`LAYOUTS`.
        model: the timm class whose weights it holds (its subclasses too).
        applies: whether a state dict is in this layout (it may be in the model's own names already).
        convert: ``(state, model) -> state`` in ``model``'s names.
    """

    name: str
    model: type
    applies: Callable[[State], bool]
    convert: Callable[[State, nn.Module], State]


LAYOUTS: Registry[Layout] = Registry("weight layout")


def register_layout(layout: Layout) -> Layout:
    """Add a family's saved layout to :data:`LAYOUTS` (tried in registration order)."""
    return LAYOUTS.register(layout.name, layout)


# every ViT state goes through timm's filter: it resamples position embeddings to the model's grid
register_layout(Layout("vit", VisionTransformer, lambda state: True, vit_filter))
register_layout(
    Layout(
        "convnext-release",
        ConvNeXt,
        is_release_convnext,
        lambda state, model: _convert(state, model, _CONVNEXT_ADDED, convnext_filter, _place_convnext),
    )
)
register_layout(
    Layout(
        "swin-release",
        SwinTransformer,
        is_release_swin,
        lambda state, model: _convert(state, model, _SWIN_ADDED, swin_filter, _place_swin),
    )
)


def convert_state_dict(state: State, model: nn.Module) -> State:
    """``state`` in ``model``'s names: converted by the first registered :class:`Layout` of ``model``'s class
    that ``state`` is in (the release's and the original ConvNeXt/Swin layouts; ViT states through timm's
    filter, position embeddings resampled to the model's grid), else as given."""
    layout = next((lay for lay in LAYOUTS.values() if isinstance(model, lay.model) and lay.applies(state)), None)
    return state if layout is None else layout.convert(state, model)
