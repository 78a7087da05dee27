"""The fixed keep rule (the paper's, arXiv 2106.02034): every image keeps the schedule's count of its
best-scored tokens, so a batch stays one dense tensor."""

from __future__ import annotations

from dynamicvit.core.keep.rule import KEEP_RULES, KeepRule

__all__ = ["FixedRule"]


class FixedRule(KeepRule):
    name = "fixed"
    help = "every image keeps the schedule's count (the paper)"


FIXED = KEEP_RULES.register(FixedRule.name, FixedRule())
