"""Read, check and write checkpoints with errors that name the offending keys.

Layout (the authors' release): a dict whose ``"model"`` entry is the state dict; backbone
keys as timm names them, predictors under ``score_predictor.{i}.in_conv/out_conv``.
Raw state dicts, ``"state_dict"``/``"model_ema"`` entries and a DDP ``module.`` prefix
are accepted too, and the release's ConvNeXt/Swin layouts are converted (:mod:`dynamicvit.weights.release`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynamicvit.core.files import CheckpointError, atomic_save
from dynamicvit.weights.release import convert_state_dict

__all__ = [
    "CheckpointError",
    "read_checkpoint",
    "read_state_dict",
    "load_checkpoint",
    "save_checkpoint",
    "infer_timm_kwargs",
    "is_added_key",
]

_STATE_KEYS = ("model", "state_dict", "model_ema")
_LIST_LIMIT = 8


class Dropped:
    """Stands in for a pickled object of a class a checkpoint names but we never import or run
    (e.g. the release's ``argparse.Namespace`` under ``args``): its state is kept as data."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reason(err: Exception) -> str:
    """The line of a loading error that says what is wrong (torch's messages span several lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line]  # code the file would run: refused, named
    return (named or lines or [type(err).__name__])[0]


def _stand_in(name: str) -> type:
    """A :class:`Dropped` subclass the unpickler takes for the global ``name`` (``module.Qualname``)."""
    module, _, qualname = name.rpartition(".")
    return type(qualname, (Dropped,), {"__module__": module, "__qualname__": qualname})


def read_checkpoint(path: str | os.PathLike) -> Any:
    """The object saved at ``path`` (``.pth`` or ``.safetensors``); clear errors.

    ``.pth`` files are read with ``weights_only=True``, so no pickled code ever runs; objects of
    other classes inside (pickled extras) are read as :class:`Dropped` stand-ins."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            extras = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            with torch.serialization.safe_globals([_stand_in(name) for name in extras]):
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        reason = _reason(err)
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt or not a PyTorch file): {reason}") from None


def read_state_dict(source: str | os.PathLike | dict) -> dict[str, torch.Tensor]:
    """The model state dict inside a checkpoint file or checkpoint dict."""
    obj = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    if isinstance(obj, dict):
        for key in _STATE_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: no state dict of tensors found (looked at the top level and {_STATE_KEYS})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _names(keys: list[str]) -> str:
    more = f" … (+{len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else ""
    return ", ".join(keys[:_LIST_LIMIT]) + more


def is_added_key(name: str) -> bool:
    """Whether a state-dict key belongs to what sparsification adds (predictors, fast paths; the
    release's names included)."""
    return any(
        part in ("score_predictor", "budget_predictor", "fast_path", "fast_path_gamma", "fastmlp", "rate_search")
        for part in name.split(".")
    )


def backbone_weights(model: nn.Module) -> list[nn.Parameter]:
    """The trainable weights of a reduced model that the reduction did not add (what a frozen phase freezes)."""
    return [p for n, p in model.named_parameters() if not is_added_key(n) and p.requires_grad]


def freeze_weights(model: nn.Module) -> list[nn.Parameter]:
    """Freeze a reduced model's backbone (no gradients computed for it) and return the frozen weights."""
    weights = backbone_weights(model)
    for p in weights:
        p.requires_grad_(False)
    return weights


def infer_timm_kwargs(weights: dict[str, torch.Tensor]) -> dict:
    """``num_classes`` and ``in_chans`` of a model, read off its state dict (classifier, first conv).

    Classifiers: timm's ``head.weight`` / ``head.fc.weight``; segmenters: ``decode.head.weight``; FCOS
    detectors (one anchor per location): the classification head's last conv. No head: an encoder
    (``num_classes`` 0).
    """
    names = ("head.weight", "head.fc.weight", "decode.head.weight", "fcos.head.classification_head.cls_logits.weight")
    heads = [k for k in names if k in weights]
    convs = [v for v in weights.values() if v.dim() == 4]
    if not convs:
        raise CheckpointError("cannot tell the input channels of these weights (no convolution)")
    return {"num_classes": weights[heads[0]].shape[0] if heads else 0, "in_chans": convs[0].shape[1]}


def load_checkpoint(model: nn.Module, source: str | os.PathLike | dict, backbone_only: bool | None = None) -> None:
    """Load ``source`` into ``model`` strictly, or raise :class:`CheckpointError` naming keys.

    ``backbone_only`` (default: when the checkpoint has no predictor keys) skips the
    ``score_predictor``/``fast_path`` entries of the model, so a dense checkpoint initialises a sparse model.

    Args:
        model: the model to load into.
        source: a checkpoint file (``.pth``, ``.safetensors``) or the object read from one.
        backbone_only: load only the backbone entries (default: when the checkpoint has no predictors).

    Raises:
        CheckpointError: a file that cannot be read, or keys and shapes that do not fit (named).
    """
    state = convert_state_dict(read_state_dict(source), model)  # release layouts; ViT position embeddings
    expected = model.state_dict()
    if backbone_only is None:
        backbone_only = not any(is_added_key(k) for k in state)
    if backbone_only:
        expected = {k: v for k, v in expected.items() if not is_added_key(k)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {_names(mismatched)}")
    if problems:
        raise CheckpointError(
            f"checkpoint {source if not isinstance(source, dict) else '(dict)'} does not fit "
            f"{type(model).__name__} (wrong architecture or size?) – " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=not backbone_only)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra: Any) -> None:
    """Write ``{"model": state_dict, **extra}`` atomically (the authors' layout).

    Args:
        model: the model whose ``state_dict`` is saved.
        path: the file to write.
        **extra: further entries (e.g. ``config``, ``epoch``).
    """
    atomic_save({"model": model.state_dict(), **extra}, path)
