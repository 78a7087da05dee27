"""dynamicvit: dynamic spatial sparsification (DynamicViT) for timm vision models."""

from dynamicvit.core.calibrate import calibrate
from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import Family, Method, TokenReducer, find_reducer
from dynamicvit.core.losses import DistillationLoss, build_criterion
from dynamicvit.core.predictor import TokenPredictor, keep_counts
from dynamicvit.core.tokens import SparseOutput
from dynamicvit.methods import METHODS, apply_method, method_of, set_budget
from dynamicvit.models import FAMILIES, create_model, demo_vits, lvvit, sparsify  # noqa: F401  (register their models with timm)
from dynamicvit.weights.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dynamicvit.weights.zoo import ZOO, list_models

__all__ = [
    "FAMILIES",
    "METHODS",
    "CheckpointError",
    "DistillationLoss",
    "Family",
    "Method",
    "SparseOutput",
    "ZOO",
    "TokenPredictor",
    "TokenReducer",
    "apply_method",
    "build_criterion",
    "calibrate",
    "count_flops",
    "create_model",
    "export_onnx",
    "find_reducer",
    "keep_counts",
    "list_models",
    "load_checkpoint",
    "method_of",
    "save_checkpoint",
    "set_budget",
    "sparsify",
    "tune",
]
__version__ = "0.3.0"

# loaded on first use, so ``import dynamicvit`` does not load the tools (and, through them, every task and data set)
_LAZY = {"export_onnx": "dynamicvit.export", "tune": "dynamicvit.bench.tune"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dynamicvit' has no attribute {name!r}")
