"""Budgets in MACs: tune any method's knob to a fraction of the dense model's MACs."""

from __future__ import annotations

from torch import nn

from dynamicvit.core.flops import count_flops
from dynamicvit.methods.registry import method_of

__all__ = ["knob_of", "macs_fraction", "set_budget"]


def knob_of(model: nn.Module) -> dict[str, float]:
    """The budget knob of a reduced ``model`` as results record it: ``{label: value}`` (``{"keep_rate": 0.7}``,
    ``{"r": 5.25}``), rounded to 4 decimals."""
    method = method_of(model)
    if method is None:
        raise ValueError(f"{type(model).__name__} is dense; it has no budget knob")
    return {method.knob_label: round(float(getattr(model, method.knob)), 4)}


def macs_fraction(model: nn.Module, dense_macs: int) -> float:
    """The fraction of ``dense_macs`` a reduced ``model`` costs, as :func:`set_budget` tunes it: counted on a
    forward, or the target its method reports (DiffRate before its search).

    Args:
        model: a model reduced by a registered method.
        dense_macs: the dense model's MACs.

    Returns:
        The fraction.
    """
    target = method_of(model).macs_fraction(model, dense_macs)
    return count_flops(model).total / dense_macs if target is None else target


def set_budget(model: nn.Module, budget: float, dense_macs: int, tolerance: float = 0.02) -> float:
    """Tune a reduced model's knob (its method's ``knob``: keep rate, ToMe's ``r``, bisected) so its MACs come
    closest to ``budget`` × ``dense_macs``; returns the fraction reached. Raises ``ValueError`` when
    the budget lies further than ``tolerance`` outside what the method can reach on this model.

    Args:
        model: a model reduced by a registered method.
        budget: the fraction of ``dense_macs`` to reach, in (0, 1].
        dense_macs: the dense model's MACs (:func:`count_flops`).
        tolerance: how far outside the reachable range a budget may lie.

    Returns:
        The fraction of the dense MACs reached.

    Raises:
        ValueError: a dense model, or a budget out of reach.
    """
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a fraction of the dense MACs in (0, 1], got {budget}")
    method = method_of(model)
    if method is None:
        raise ValueError(f"{type(model).__name__} is dense; reduce it with apply_method first")

    def fraction(value) -> float:
        setattr(model, method.knob, value)
        return macs_fraction(model, dense_macs)

    cheap, costly = method.knob_range(model)
    sign = 1 if costly > cheap else -1  # ties go to the costlier value
    values = {v: fraction(v) for v in (cheap, costly)}
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
