"""The method registry: each method registers itself once, in the command line's order."""

import pytest

from dynamicvit.methods import METHODS, get_method, register_method


def test_methods_register_in_command_line_order_and_only_once():
    assert list(METHODS) == [
        "dynamicvit",
        "random",
        "static",
        "pool",
        "evit",
        "tome",
        "topk",
        "ppt",
        "mctf",
        "diffrate",
    ]
    with pytest.raises(ValueError, match="'tome' is already registered"):
        register_method(METHODS["tome"])


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of dynamicvit, random"):
        get_method("nope")


@pytest.mark.parametrize("name", [m for m in METHODS if m != "dynamicvit"])
def test_a_vit_method_refuses_a_convnet_in_one_line_and_leaves_it_untouched(name):
    """Every method but DynamicViT reduces ViT tokens: a ConvNeXt is refused before anything is changed."""
    import torch
    from timm.models.convnext import ConvNeXt

    model = ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 8, 8, 8), num_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises((TypeError, ValueError)) as refused:
        METHODS[name].apply(model, keep_rate=0.5)
    assert "\n" not in str(refused.value) and "ConvNeXt" in str(refused.value)
    assert type(model) is ConvNeXt and list(dict(model.named_children())) == ["stem", "stages", "norm_pre", "head"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
