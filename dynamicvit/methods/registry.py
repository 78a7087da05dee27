"""The method registry: name → :class:`~dynamicvit.core.interfaces.Method` subclass. Each method module
registers its class with :func:`register_method` when imported (as timm's ``register_model``), so this
module depends on no method and every layer above can read the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from torch import nn

from dynamicvit.core.interfaces import Method, find_reducer
from dynamicvit.core.registry import Registry

__all__ = ["METHODS", "apply_method", "get_method", "method_of", "register_method"]

METHODS: Registry[type[Method]] = Registry("method")
"""Token-reduction methods by name, each registered by its module in :mod:`dynamicvit.methods` when the package
is imported (the ``--method`` choices, in their order): DynamicViT and the baselines and rivals."""

M = TypeVar("M", bound=type[Method])


def register_method(method: M) -> M:
    """Class decorator: add ``method`` to :data:`METHODS` under its ``name``."""
    return METHODS.register(method.name, method)


def get_method(name: str) -> type[Method]:
    """The registered method called ``name``, or a ``ValueError`` listing them."""
    return METHODS.lookup(name)


def method_of(model: nn.Module) -> type[Method] | None:
    """The method that reduces ``model`` (``None`` for a dense model).

    Args:
        model: any module.

    Returns:
        The registered :class:`Method` class of the model's reducer, or ``None``.
    """
    reducer = find_reducer(model)
    return None if reducer is None else METHODS[reducer.method]


def apply_method(
    model: nn.Module,
    method: str,
    keep_rate: float = 0.7,
    prune_layers: Sequence[int] | None = None,
    r: int = 8,
    fuse: bool = True,
    seed: int = 0,
    **options: Any,
) -> nn.Module:
    """Reduce a timm model in place with ``method`` (a name in :data:`METHODS`) and return it.

    Args:
        model: a timm model of a family the method supports.
        method: the method's registered name.
        keep_rate: keep rate of the keep-based methods (and ``dynamicvit``, whose predictors are new
            and need training).
        prune_layers: the blocks where those methods reduce (default: the paper's schedule).
        r: ToMe's tokens merged per block.
        fuse: whether EViT fuses the dropped tokens into one.
        seed: the ``random`` method's generator seed.
        **options: family options of the method (``dynamicvit``: ``keep_ratios`` of ConvNeXt/Swin).

    Returns:
        ``model``, reduced in place.
    """
    return get_method(method).apply(
        model, keep_rate=keep_rate, prune_layers=prune_layers, r=r, fuse=fuse, seed=seed, **options
    )
