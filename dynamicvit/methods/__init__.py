"""Token-reduction methods behind one API, for comparisons at equal FLOPs.

``METHODS`` is the registry: name → :class:`dynamicvit.core.interfaces.Method` subclass, one module each.
Every method is swapped into a timm model in place, like :func:`dynamicvit.sparsify` (weights
untouched, same ``forward`` signature). Written from their papers:

* ``dynamicvit`` – DynamicViT's learned predictors (:mod:`.dynamicvit`);
* ``random`` / ``static`` – random or centre keep at DynamicViT's schedule (:mod:`.random`, :mod:`.static`);
* ``pool`` – structural down-sampling of the token grid (:mod:`.pool`);
* ``evit`` – EViT, class-token attention keep with a fused token (:mod:`.evit`);
* ``tome`` – ToMe, bipartite token merging in every block (:mod:`.tome`).

A new method is its own module plus one line in ``METHODS``. :func:`set_budget` tunes any
method's knob to a fraction of the dense MACs. Prefix tokens (class, distillation, registers)
are never dropped or merged.
"""

from __future__ import annotations

from torch import nn

from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import Method, find_reducer
from dynamicvit.methods.dynamicvit import DynamicViT
from dynamicvit.methods.evit import EViT
from dynamicvit.methods.pool import GridPool
from dynamicvit.methods.random import RandomKeep, random_decisions, random_selector
from dynamicvit.methods.static import StaticKeep
from dynamicvit.methods.tome import ToMe

__all__ = [
    "METHODS",
    "Method",
    "apply_method",
    "get_method",
    "method_of",
    "random_decisions",
    "random_selector",
    "set_budget",
]

METHODS: dict[str, type[Method]] = {m.name: m for m in (DynamicViT, RandomKeep, StaticKeep, GridPool, EViT, ToMe)}


def get_method(name: str) -> type[Method]:
    """The registered method called ``name``, or a ``ValueError`` listing them."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_of(model: nn.Module) -> type[Method] | None:
    """The method that reduces ``model`` (``None`` for a dense model)."""
    reducer = find_reducer(model)
    return None if reducer is None else METHODS[reducer.method]


def apply_method(
    model: nn.Module,
    method: str,
    keep_rate: float = 0.7,
    prune_layers=None,
    r: int = 8,
    fuse: bool = True,
    seed: int = 0,
) -> nn.Module:
    """Reduce a timm model in place with ``method`` (a name in :data:`METHODS`) and return it.

    ``keep_rate``/``prune_layers`` set the schedule of the keep-based methods (and
    ``dynamicvit``, whose predictors are new and need training); ``r`` is ToMe's tokens
    merged per block; ``fuse`` EViT's extra token; ``seed`` the ``random`` method's generator.
    """
    return get_method(method).apply(model, keep_rate=keep_rate, prune_layers=prune_layers, r=r, fuse=fuse, seed=seed)


def set_budget(model: nn.Module, budget: float, dense_macs: int, tolerance: float = 0.02) -> float:
    """Tune a reduced model's knob (its method's ``knob``: keep rate, ToMe's ``r``) so its MACs come
    closest to ``budget`` × ``dense_macs``; returns the fraction reached. Raises ``ValueError`` when
    the budget lies further than ``tolerance`` outside what the method can reach on this model."""
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a fraction of the dense MACs in (0, 1], got {budget}")
    method = method_of(model)
    if method is None:
        raise ValueError(f"{type(model).__name__} is dense; reduce it with apply_method first")

    def fraction(value) -> float:
        setattr(model, method.knob, value)
        return count_flops(model).total / dense_macs

    cheap, costly = method.knob_range(model)
    sign = 1 if costly > cheap else -1  # ties go to the costlier value
    values = {v: fraction(v) for v in (cheap, costly)}
    if method.integer_knob:  # bisect until the two ends are neighbours
        while abs(costly - cheap) > 1:
            mid = (cheap + costly) // 2
            values[mid] = fraction(mid)
            cheap, costly = (cheap, mid) if values[mid] > budget else (mid, costly)
    else:
        for _ in range(14):
            mid = (cheap + costly) / 2
            values[mid] = fraction(mid)
            cheap, costly = (mid, costly) if values[mid] <= budget else (cheap, mid)
    reach = (min(values.values()), max(values.values()))
    if not reach[0] - tolerance <= budget <= reach[1] + tolerance:
        raise ValueError(
            f"budget {budget} is outside what {method.name} reaches on this model "
            f"({reach[0]:.3f} to {reach[1]:.3f} of the dense MACs)"
        )
    best = min(values, key=lambda v: (abs(values[v] - budget), -sign * v))
    return fraction(best)
