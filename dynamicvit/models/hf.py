"""Hugging Face ``transformers`` ViTs through the same :func:`dynamicvit.sparsify`: ``ViTModel``,
``ViTForImageClassification`` and ``Dinov2Model`` (optional: ``pip install dynamicvit[hf]``).

A Hugging Face ViT is the architecture timm's ``VisionTransformer`` implements, with other parameter
names; :func:`to_timm` builds the timm model of the same configuration and copies the weights over
(query, key and value into timm's fused ``qkv``; DINOv2's layer scales into ``ls1``/``ls2``), and the
family's ``sparsify`` sparsifies that model – so a Hugging Face checkpoint gets everything a timm ViT
gets (training, FLOPs, benchmarks, export). The result is a timm model: ``sparsify`` returns a new
object here instead of changing the Hugging Face one in place. Its outputs equal the Hugging Face
model's (logits of the classifier; ``last_hidden_state`` is its ``forward_features``).
"""

from __future__ import annotations

import re
from functools import partial

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from dynamicvit.core.interfaces import Family
from dynamicvit.models.registry import register_family
from dynamicvit.models.vit import sparsify_vit

__all__ = ["FAMILY", "SUPPORTED_HF", "is_hf_vit", "to_timm"]

SUPPORTED_HF = (
    "Hugging Face transformers ViTModel, ViTForImageClassification and Dinov2Model (GELU MLP, no SwiGLU), "
    "converted to the timm ViT of the same configuration"
)
_CLASSES = ("ViTModel", "ViTForImageClassification", "Dinov2Model")

# Hugging Face parameter names (transformers 5 and 4) → timm's, per block
_BLOCK = {
    r"attention\.(q_proj|attention\.query)": "q",
    r"attention\.(k_proj|attention\.key)": "k",
    r"attention\.(v_proj|attention\.value)": "v",
    r"attention\.(o_proj|output\.dense)": "attn.proj",
    r"(layernorm_before|norm1)": "norm1",
    r"(layernorm_after|norm2)": "norm2",
    r"(mlp\.fc1|intermediate\.dense)": "mlp.fc1",
    r"(mlp\.fc2|output\.dense)": "mlp.fc2",
    r"layer_scale1": "ls1",
    r"layer_scale2": "ls2",
}
_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
}
_DROPPED = ("embeddings.mask_token", "pooler.")  # DINOv2's masked-image token, ViTModel's tanh pooler


def is_hf_vit(model: nn.Module) -> bool:
    """Whether ``model`` is one of the supported Hugging Face ViT classes."""
    return type(model).__module__.startswith("transformers.") and type(model).__name__ in _CLASSES


def to_timm(model: nn.Module) -> VisionTransformer:
    """The timm ``VisionTransformer`` with the configuration and weights of a Hugging Face ViT / DINOv2."""
    if not is_hf_vit(model):
        raise TypeError(f"{type(model).__name__} is not supported; supported: {SUPPORTED_HF}")
    cfg = model.config
    problems = []
    if getattr(cfg, "hidden_act", "gelu") != "gelu":
        problems.append(f"activation {cfg.hidden_act!r} (timm's ViT MLP uses exact GELU)")
    if getattr(cfg, "use_swiglu_ffn", False):
        problems.append("a SwiGLU MLP")
    if problems:
        raise TypeError(f"cannot convert {type(model).__name__}: {'; '.join(problems)}. Supported: {SUPPORTED_HF}")
    dinov2 = type(model).__name__ == "Dinov2Model"
    hidden = cfg.hidden_size
    mlp = cfg.hidden_size * cfg.mlp_ratio if dinov2 else cfg.intermediate_size
    timm_model = VisionTransformer(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        in_chans=cfg.num_channels,
        num_classes=cfg.num_labels if type(model).__name__ == "ViTForImageClassification" else 0,
        embed_dim=hidden,
        depth=cfg.num_hidden_layers,
        num_heads=cfg.num_attention_heads,
        mlp_ratio=mlp / hidden,
        qkv_bias=getattr(cfg, "qkv_bias", True),
        init_values=cfg.layerscale_value if dinov2 else None,
        norm_layer=partial(nn.LayerNorm, eps=cfg.layer_norm_eps),
    )
    timm_model.load_state_dict(_convert(model.state_dict()))
    return timm_model.to(next(model.parameters()).device).train(model.training)


def _convert(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[int, str], torch.Tensor] = {}
    for key, value in state.items():
        name = re.sub(r"^(vit\.|dinov2\.)", "", key)
        if name.startswith(_DROPPED):
            continue
        if name in _TOP:
            out[_TOP[name]] = value
            continue
        block = re.match(r"^(?:encoder\.layer|layers|encoder\.layers)\.(\d+)\.(.+)\.(weight|bias|lambda1)$", name)
        if block is None:
            raise ValueError(f"unexpected Hugging Face parameter {key!r}")
        index, inner, kind = int(block.group(1)), block.group(2), block.group(3)
        target = next((t for pattern, t in _BLOCK.items() if re.fullmatch(pattern, inner)), None)
        if target is None:
            raise ValueError(f"unexpected Hugging Face parameter {key!r}")
        if target in ("q", "k", "v"):
            parts[(index, f"{target}.{kind}")] = value
        else:
            out[f"blocks.{index}.{target}.{'gamma' if kind == 'lambda1' else kind}"] = value
    for index in sorted({i for i, _ in parts}):
        for kind in ("weight", "bias"):
            if (index, f"q.{kind}") in parts:
                out[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts[(index, f"{p}.{kind}")] for p in "qkv"])
    return out


def sparsify_hf(model: nn.Module, keep_rate: float = 0.7, prune_layers=None) -> VisionTransformer:
    """DynamicViT on a Hugging Face ViT: :func:`to_timm`, then :func:`~dynamicvit.models.vit.sparsify_vit`
    (a new model)."""
    return sparsify_vit(to_timm(model), keep_rate, prune_layers)


FAMILY = register_family(
    Family(
        name="Hugging Face ViT",
        supported=SUPPORTED_HF,
        recognises=is_hf_vit,
        sparsify=sparsify_hf,
        ratio_weight=2.0,  # a plain ViT's recipe
        backbone_lr_scale=0.01,
    )
)
