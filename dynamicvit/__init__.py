"""dynamicvit: dynamic spatial sparsification (DynamicViT) for timm vision models."""

from . import zoo  # noqa: F401  (registers the demo models with timm)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models import create_model, sparsify
from .predictor import TokenPredictor, keep_counts
from .vit import SparseOutput

__all__ = [
    "CheckpointError",
    "SparseOutput",
    "TokenPredictor",
    "create_model",
    "keep_counts",
    "load_checkpoint",
    "save_checkpoint",
    "sparsify",
]
__version__ = "0.1.0"
