"""The dense prefix shared with the teacher: when the layers before a DynamicViT model's first pruning
stage are frozen, deterministic and equal to the dense teacher's, the teacher resumes from the tokens the
student computed there instead of recomputing them (cheaper calibration and frozen-backbone epochs)."""

from __future__ import annotations

import weakref

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["SharedPrefixMixin"]


def _train_mode_differs(module: nn.Module) -> bool:
    """Whether ``module`` (not its children) computes differently in train mode than in eval mode."""
    if not module.training:
        return False
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    rate = getattr(module, "p", None) if isinstance(module, nn.modules.dropout._DropoutNd) else None
    rate = rate or getattr(module, "drop_prob", None) or getattr(module, "prob", None)  # DropPath, PatchDropout
    return bool(rate)


def _continues(teacher: nn.Module) -> bool:
    """Whether ``teacher``'s features are timm's ViT ones: embedding, ``blocks`` in order, ``norm``."""
    return (
        isinstance(teacher, VisionTransformer) and type(teacher).forward_features is VisionTransformer.forward_features
    )


class SharedPrefixMixin:
    """Prefix sharing for a DynamicViT model (mixed in before :class:`TokenReductionMixin`): the train-mode
    forward records the tokens entering the first pruning stage in ``_shared`` when :meth:`prefix_is_fixed`,
    and :meth:`teacher_features` resumes the teacher from them."""

    shares_prefix = True  # the teacher can resume from the tokens before the first stage (timm ViT blocks)
    _images: weakref.ref  # the images of the latest train-mode forward (set by _check_input)
    _shared: tuple[weakref.ref, torch.Tensor] | None = None  # (those images, tokens before the first stage)
    _prefix_stamp: list | None = None
    _prefix_same = False
    _prefix_frozen = False  # freeze_prefix() was called
    _prune_layers: list[int]

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        grid = super()._check_input(x)
        if self.training and not torch.compiler.is_compiling():  # every train forward passes here
            self._shared, self._images = None, weakref.ref(x)  # which images the shared tokens are of
        return grid

    def _prefix_modules(self, model: nn.Module | None = None) -> list[nn.Module]:
        """What runs before the first pruning stage in this model (or in the dense ``model`` it came from)."""
        model = self if model is None else model
        first = self._prune_layers[0]
        return [model.patch_embed, model.pos_drop, model.patch_drop, model.norm_pre, *model.blocks[:first]]

    def prefix_state(self, model: nn.Module | None = None) -> list[torch.Tensor]:
        """The tensors that compute the tokens entering the first pruning stage of this model (or of the
        dense ``model`` it came from): class/register/position tokens, patch embedding, the blocks before."""
        model = self if model is None else model
        tokens = [getattr(model, n, None) for n in ("cls_token", "dist_token", "reg_token", "pos_embed")]
        weights = [t for m in self._prefix_modules(model) for t in (*m.parameters(), *m.buffers())]
        return [t for t in tokens if isinstance(t, torch.Tensor)] + weights

    def freeze_prefix(self) -> None:
        """Never train what runs before the first pruning stage: no gradients for its weights, its batch
        norms (a convolutional stem's) always in eval mode. The teacher then reuses its tokens."""
        for t in self.prefix_state():
            t.requires_grad_(False)
        self._prefix_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self._prefix_frozen:
            for module in self._prefix_modules():
                module.apply(lambda m: m.eval() if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
        return self

    def prefix_is_fixed(self) -> bool:
        """Whether the layers before the first pruning stage compute, in this train-mode forward, exactly
        what they compute in eval mode with weights that cannot change: no weight of theirs needs a gradient,
        no dropout, drop-path, patch dropout or batch statistics."""
        if not self.shares_prefix:
            return False
        random = any(_train_mode_differs(m) for module in self._prefix_modules() for m in module.modules())
        return not random and not any(t.requires_grad for t in self.prefix_state())

    def teacher_features(self, teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """``teacher.forward_features(images)`` for the dense ``teacher`` this model was sparsified from,
        reusing the tokens this model's last train-mode forward computed before its first pruning stage
        when that part is frozen and deterministic and equal to the teacher's (checked): those layers
        then run once for both (cheaper calibration and frozen-backbone epochs)."""
        shared, self._shared = self._shared, None
        if shared is not None and shared[0]() is images and _continues(teacher) and self._same_prefix(teacher):
            return teacher.norm(teacher.blocks[self._prune_layers[0] :](shared[1]))
        return teacher.forward_features(images)

    def _same_prefix(self, teacher: nn.Module) -> bool:
        """Whether ``teacher``'s prefix weights equal this model's; rechecked only after either changed."""
        mine, theirs = self.prefix_state(), self.prefix_state(teacher)
        stamp = [(t.data_ptr(), t._version) for t in (*mine, *theirs)]
        if self._prefix_stamp != stamp:
            same = len(mine) == len(theirs) and all(
                a.shape == b.shape and torch.equal(a, b) for a, b in zip(mine, theirs, strict=True)
            )
            self._prefix_stamp, self._prefix_same = stamp, same
        return self._prefix_same
