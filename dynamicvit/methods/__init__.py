"""Token-reduction methods behind one API, for comparisons at equal FLOPs.

``METHODS`` (:mod:`.registry`) maps names to :class:`dynamicvit.core.interfaces.Method` subclasses, one module
each, registered by a ``@register_method`` on the class.
Every method is swapped into a timm model in place, like :func:`dynamicvit.sparsify` (weights
untouched, same ``forward`` signature). Written from their papers:

* ``dynamicvit`` – DynamicViT's learned predictors (:mod:`.dynamicvit`);
* ``random`` / ``static`` – random or centre keep at DynamicViT's schedule (:mod:`.random`, :mod:`.static`);
* ``pool`` – structural down-sampling of the token grid (:mod:`.pool`);
* ``evit`` – EViT, class-token attention keep with a fused token (:mod:`.evit`);
* ``tome`` – ToMe, bipartite token merging in every block (:mod:`.tome`);
* ``topk`` – class-attention top-k without fusion, the ICCVW 2023 baseline (:mod:`.topk`);
* ``ppt`` – PPT, prune or pool per image by the spread of token importance (:mod:`.ppt`);
* ``mctf`` – MCTF, multi-criteria fusion with one-step-ahead attention (:mod:`.mctf`);
* ``diffrate`` – DiffRate, per-block prune and merge counts searched for a MACs target (:mod:`.diffrate`).

A new method is its own module plus its import below. :func:`set_budget` (:mod:`.budget`) tunes any
method's knob to a fraction of the dense MACs. Prefix tokens (class, distillation, registers)
are never dropped or merged.
"""

from dynamicvit.core.interfaces import Method
from dynamicvit.core.predictor import random_decisions, random_selector

# importing registers each method, in the order of the --method choices
# isort: off
from dynamicvit.methods import dynamicvit  # noqa: F401
from dynamicvit.methods import random  # noqa: F401
from dynamicvit.methods import static  # noqa: F401
from dynamicvit.methods import pool  # noqa: F401
from dynamicvit.methods import evit  # noqa: F401
from dynamicvit.methods import tome  # noqa: F401
from dynamicvit.methods import topk  # noqa: F401
from dynamicvit.methods import ppt  # noqa: F401
from dynamicvit.methods import mctf  # noqa: F401
from dynamicvit.methods import diffrate  # noqa: F401

# isort: on
from dynamicvit.methods.budget import knob_of, set_budget
from dynamicvit.methods.registry import METHODS, apply_method, get_method, method_of, register_method

__all__ = [
    "METHODS",
    "Method",
    "apply_method",
    "get_method",
    "knob_of",
    "method_of",
    "random_decisions",
    "random_selector",
    "register_method",
    "set_budget",
]
