"""Hugging Face ViTs (transformers, built offline from configs) through dynamicvit.sparsify."""

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTForImageClassification, ViTModel

import dynamicvit
from dynamicvit.models.hf import to_timm

VIT = dict(
    image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
)


def _hf(kind: str):
    torch.manual_seed(0)
    if kind == "classifier":
        model = ViTForImageClassification(ViTConfig(**VIT, num_labels=5))
    elif kind == "encoder":
        model = ViTModel(ViTConfig(**VIT))
    else:
        config = Dinov2Config(image_size=28, patch_size=4, hidden_size=32, num_hidden_layers=4, num_attention_heads=2)
        model = Dinov2Model(config)
    for p in model.parameters():  # away from the small init, so every weight matters to the output
        torch.nn.init.normal_(p, std=0.3)
    return model.eval()


@pytest.mark.parametrize("kind", ["classifier", "encoder", "dinov2"])
def test_converted_model_equals_the_hugging_face_one_and_keeps_the_contract(kind):
    hf = _hf(kind)
    size = hf.config.image_size
    x = torch.randn(3, 3, size, size)
    timm_model = to_timm(hf).eval()
    with torch.no_grad():
        if kind == "classifier":
            reference, ours = hf(x).logits, timm_model(x)
        else:
            reference, ours = hf(x).last_hidden_state, timm_model.forward_features(x)
    assert reference.abs().max() > 0.1 and torch.allclose(ours, reference, atol=1e-4)
    sparse = dynamicvit.sparsify(hf, keep_rate=0.6)  # the same call as for a timm model
    assert isinstance(sparse, dynamicvit.TokenReducer)
    n = sparse.patch_embed.num_patches
    with torch.no_grad():
        every = [torch.arange(n).expand(3, n)] * 3  # every token kept: the Hugging Face model itself
        full = sparse.eval()(x, decisions=every)
        pruned = sparse.forward_with_decisions(x)
        masks = [torch.zeros(3, n).scatter(1, d, 1.0) for d in pruned.decisions]
        masked = sparse.train().forward_with_decisions(x, decisions=masks)
    assert torch.allclose(masked.logits, pruned.logits, atol=1e-4)
    dense_output = reference if kind == "classifier" else reference[:, 0]  # an encoder's class token
    assert torch.allclose(full, dense_output, atol=1e-4)
    assert not torch.allclose(pruned.logits, dense_output, atol=1e-3)  # pruning changed the output


@pytest.mark.promise(
    "bad input",
    "a Hugging Face block the family cannot follow → `cannot convert ViTModel: activation 'gelu_new' …`",
)
def test_unsupported_hugging_face_models_are_named():
    config = ViTConfig(**{**VIT, "hidden_act": "gelu_new"})
    with pytest.raises(TypeError, match="activation 'gelu_new'"):
        dynamicvit.sparsify(ViTModel(config))
    swiglu = Dinov2Model(
        Dinov2Config(
            image_size=28, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, use_swiglu_ffn=True
        )
    )
    with pytest.raises(TypeError, match="SwiGLU"):
        dynamicvit.sparsify(swiglu)
