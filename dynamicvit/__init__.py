"""dynamicvit: dynamic spatial sparsification (DynamicViT) for timm vision models."""

from . import zoo  # noqa: F401  (registers the demo models with timm)
from .baselines import METHODS, apply_method, set_budget
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .export import export_onnx
from .flops import count_flops
from .losses import DistillationLoss
from .models import create_model, sparsify
from .predictor import TokenPredictor, keep_counts
from .vit import SparseOutput

__all__ = [
    "METHODS",
    "CheckpointError",
    "DistillationLoss",
    "SparseOutput",
    "TokenPredictor",
    "apply_method",
    "count_flops",
    "create_model",
    "export_onnx",
    "keep_counts",
    "load_checkpoint",
    "save_checkpoint",
    "set_budget",
    "sparsify",
]
__version__ = "0.2.0"
