"""The family registry: registration, recognition, the families' map flag."""

import pytest
import timm
from torch import nn

from dynamicvit.models import FAMILIES, family_of, find_family, register_family
from dynamicvit.models.registry import build_timm_model, keeps_maps, segments_tokens


def test_every_family_registers_once_in_command_line_order():
    assert list(FAMILIES) == ["ViT", "EVA", "BEiT", "Hugging Face ViT", "ConvNeXt/Swin"]
    with pytest.raises(ValueError, match="'ViT' is already registered"):
        register_family(FAMILIES["ViT"])


@pytest.mark.promise("bad input", "an unsupported model → `Linear is not supported; supported: …`")
def test_unsupported_model_lists_the_families():
    assert find_family(nn.Linear(2, 2)) is None
    with pytest.raises(TypeError, match="Linear is not supported; supported: .*ConvNeXt"):
        family_of(nn.Linear(2, 2))


def test_only_hierarchical_families_keep_maps():
    convnext = timm.create_model("convnext_atto", num_classes=0)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=0)
    assert keeps_maps(convnext) and not keeps_maps(vit) and not keeps_maps(nn.Linear(2, 2))
    # how each segments: a ViT's tokens put back on the grid, a hierarchical net's maps
    assert segments_tokens(vit) and not segments_tokens(convnext) and not segments_tokens(nn.Linear(2, 2))


@pytest.mark.promise("bad input", "an unknown model → `unknown model 'no_such_net'. Supported: …`")
def test_unknown_timm_name_is_a_value_error_listing_the_families():
    with pytest.raises(ValueError, match="unknown model 'no_such_net'. Supported: "):
        build_timm_model("no_such_net")


def test_a_block_kind_registers_in_one_place():
    """A hierarchical family's blocks are known from their registered kind alone."""
    from torch import nn

    from dynamicvit.models.hierarchical import BLOCK_KINDS, is_hierarchical
    from dynamicvit.models.hierarchical.asymmetric import BlockKind, register_block_kind

    class ToyStage(nn.Module):
        pass

    class ToyKind(BlockKind):
        name, block, stage, models, channels_first = "toy", nn.Identity, ToyStage, (), True

    net = nn.Sequential(ToyStage())
    assert list(BLOCK_KINDS) == ["convnext", "swin"] and not is_hierarchical(net)
    register_block_kind(ToyKind())
    try:
        assert is_hierarchical(net)
    finally:
        BLOCK_KINDS.remove("toy")
