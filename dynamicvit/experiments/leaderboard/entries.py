"""What a leaderboard compares: every registered method, and DynamicViT's variants as entries of their own."""

from __future__ import annotations

from dataclasses import dataclass, field

from dynamicvit.methods.registry import METHODS, get_method

__all__ = ["Entry", "default_entries", "entries", "get_entry"]


@dataclass(frozen=True)
class Entry:
    """A row of the board: a method with config fields of a variant.

    Attributes:
        name: the entry's name on the board (``dynamicvit+topk``).
        method: the registered method.
        fields: config fields of the variant (``mask_rule``, ``merge_dropped``, ``attention_prior``,
            ``predictor_width``).
        label: its name in tables.
    """

    name: str
    method: str
    fields: dict = field(default_factory=dict)
    label: str = ""

    @property
    def learned(self) -> bool:
        """Whether it has parameters of its own (it trains in every regime)."""
        return get_method(self.method).learned

    @property
    def randomised(self) -> bool:
        """Whether a training-free evaluation draws random numbers (``random``): it is run per seed."""
        return not get_method(self.method).exportable


VARIANTS = (
    Entry("dynamicvit+topk", "dynamicvit", {"mask_rule": "topk"}, "DynamicViT (top-k rule)"),
    Entry("dynamicvit+merge", "dynamicvit", {"merge_dropped": True}, "DynamicViT (merged drops)"),
    Entry("dynamicvit+topk+merge", "dynamicvit", {"mask_rule": "topk", "merge_dropped": True},
          "DynamicViT (top-k rule, merged drops)"),
    Entry("dynamicvit+prior+topk", "dynamicvit", {"attention_prior": True, "mask_rule": "topk"},
          "DynamicViT (attention prior, top-k rule)"),
    Entry("dynamicvit+prior+topk+merge", "dynamicvit",
          {"attention_prior": True, "mask_rule": "topk", "merge_dropped": True},
          "DynamicViT (attention prior, top-k rule, merged drops)"),
    Entry("dynamicvit+light", "dynamicvit", {"predictor_width": 0.25}, "DynamicViT (quarter-width predictors)"),
    Entry("dynamicvit+topk+light", "dynamicvit", {"mask_rule": "topk", "predictor_width": 0.25},
          "DynamicViT (top-k rule, quarter-width predictors)"),
    Entry("dynamicvit+topk+light+frozen-noise", "dynamicvit",
          {"mask_rule": "topk", "predictor_width": 0.25, "mask_noise": "frozen"},
          "DynamicViT (top-k rule, quarter-width predictors, noise only while frozen)"),
)  # fmt: skip
FROZEN_ONLY = ("random", "static", "pool")  # baselines without a fine-tuned regime on the larger grids
# variants that differ only once the backbone trains: in the frozen regime they are another entry's rows
FINETUNE_ONLY = ("dynamicvit+topk+light+frozen-noise",)
# DynamicViT's entries fine-tuned on the larger grids: its best variants of the 6×6 board (the top-k rule, with
# merged drops or quarter-width predictors) and the paper's rule, the best full-width one in the 10×10 board's
# frozen regime; ``--entries`` picks others
LARGE_GRID_VARIANTS = (
    "dynamicvit",
    "dynamicvit+topk",
    "dynamicvit+topk+merge",
    "dynamicvit+topk+light",
    "dynamicvit+topk+light+frozen-noise",
)


def entries() -> dict[str, Entry]:
    """Every entry by name: the registered methods, then DynamicViT's variants."""
    plain = {name: Entry(name, name, {}, get_method(name).label) for name in METHODS}
    return {**plain, **{v.name: v for v in VARIANTS}}


def get_entry(name: str) -> Entry:
    """The entry called ``name``, or a one-line error listing them."""
    known = entries()
    if name not in known:
        raise ValueError(f"unknown leaderboard entry {name!r}; choose from {', '.join(known)}")
    return known[name]


def default_entries(regime: str, small_grid: bool) -> list[str]:
    """The entries a board runs in ``regime``: every one on the 6×6 grid; on larger grids the frozen regime
    for every entry, the fine-tuned one for every rival and :data:`LARGE_GRID_VARIANTS`; the
    :data:`FINETUNE_ONLY` variants in the fine-tuned regime only."""
    names = list(entries())
    if regime == "frozen":
        return [n for n in names if n not in FINETUNE_ONLY]
    if small_grid:
        return names
    rivals = [n for n in names if n not in FROZEN_ONLY and get_entry(n).method != "dynamicvit"]
    return [*rivals, *LARGE_GRID_VARIANTS]
