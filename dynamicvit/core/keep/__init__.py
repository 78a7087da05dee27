"""Keep rules and mask rules, one module each, registered in :data:`KEEP_RULES` / :data:`MASK_RULES`
(:mod:`.rule`). A new rule is its own module plus its import below; the command line's ``--keep-mode``
choices, calibration, benchmarks, the app and the FLOPs report read the registry."""

# importing registers each rule, in the order of the --keep-mode choices
# isort: off
from dynamicvit.core.keep import fixed  # noqa: F401
from dynamicvit.core.keep import threshold  # noqa: F401
from dynamicvit.core.keep import learned  # noqa: F401
from dynamicvit.core.keep import gumbel  # noqa: F401
from dynamicvit.core.keep import topk  # noqa: F401

# isort: on
from dynamicvit.core.keep.rule import KEEP_RULES, MASK_RULES, KeepRule, MaskRule, calibrated_rule, untrained_rules

DEFAULT_KEEP_MODE: str = fixed.FixedRule.name  # what a model runs unless told otherwise: the paper's counts
DEFAULT_MASK_RULE: str = gumbel.GumbelRule.name  # what a model trains with unless told otherwise: the paper's
MASK_NOISES = topk.NOISES

__all__ = [
    "DEFAULT_KEEP_MODE",
    "DEFAULT_MASK_RULE",
    "KEEP_RULES",
    "MASK_NOISES",
    "MASK_RULES",
    "KeepRule",
    "MaskRule",
    "calibrated_rule",
    "untrained_rules",
]
