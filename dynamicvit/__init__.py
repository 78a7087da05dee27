"""dynamicvit: dynamic spatial sparsification (DynamicViT) for timm vision models."""

from . import archs, lvvit  # noqa: F401  (register their models with timm)
from .base import Family, Method, TokenReducer, find_reducer
from .calibrate import calibrate
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .export import export_onnx
from .flops import count_flops
from .losses import DistillationLoss, build_criterion
from .methods import METHODS, apply_method, method_of, set_budget
from .models import FAMILIES, create_model, sparsify
from .predictor import TokenPredictor, keep_counts
from .tokens import SparseOutput
from .tune import tune
from .zoo import ZOO, list_models

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
__version__ = "0.2.0"
