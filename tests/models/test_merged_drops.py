"""DynamicViT with merged drops: the dropped tokens' content lives on in the kept ones, the same in train
and eval mode, exportable; what cannot merge says so."""

import pytest
import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.export import export_onnx
from dynamicvit.models.merged_drops import merge_into_kept


def _merging(kind="plain", **overrides):
    model = dynamicvit.sparsify(tiny_vit(kind, **overrides), keep_rate=0.6)
    model.merge_dropped = True
    return model


def test_each_dropped_token_joins_its_most_similar_kept_token():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]]])
    fused, size = merge_into_kept(patches, torch.ones(1, 4, 1), torch.tensor([[0, 1]]))
    assert torch.allclose(fused, torch.tensor([[[0.95, 0.05], [0.1, 0.9]]])) and size.flatten().tolist() == [2, 2]
    # kept positions in any order, sizes weighting the means: slot j is keep[j]'s
    sized = torch.tensor([[[1.0], [3.0], [1.0], [1.0]]])
    fused, size = merge_into_kept(patches, sized, torch.tensor([[1, 0]]))
    assert size.flatten().tolist() == [4, 2]
    assert torch.allclose(fused, torch.tensor([[[0.05, 0.95], [0.95, 0.05]]]))


@pytest.mark.parametrize("kind", ["plain", "registers"])
def test_train_masks_equal_eval_merging(kind):
    """Same weights, same kept tokens → same logits in both modes, and not those of plain dropping."""
    model = _merging(kind)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pruned = model.eval().forward_with_decisions(x)
        n = model.patch_embed.num_patches
        masks = [torch.zeros(2, n).scatter(1, d, 1.0) for d in pruned.decisions]
        masked = model.train().forward_with_decisions(x, decisions=masks)
        model.eval().merge_dropped = False
        dropped = model(x, decisions=pruned.decisions)
    assert torch.allclose(masked.logits, pruned.logits, atol=1e-4)
    assert not torch.allclose(dropped, pruned.logits, atol=1e-4)
    assert pruned.features.shape[1] == model.num_prefix_tokens + model.keep_counts()[-1]


def test_merging_trains_the_predictors_through_the_merge_and_exports(tmp_path):
    model = _merging().train()
    out = model.forward_with_decisions(torch.randn(3, 3, 32, 32))
    out.logits.sum().backward()
    assert model.score_predictor[0].out_conv[0].weight.grad.abs().sum() > 0
    torch.manual_seed(0)
    with torch.no_grad():  # fresh predictors score every token alike: spread them so no rank is a tie
        for p in model.score_predictor.parameters():
            p.normal_(0, 0.5)
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.cat([model(x[i : i + 1]) for i in range(3)]), model(x), atol=1e-5)
    assert export_onnx(model, tmp_path / "merged.onnx")["max_abs_diff"] < 1e-4


def test_what_cannot_merge_says_so():
    model = _merging().eval()
    model.keep_mode = "threshold"
    with pytest.raises(ValueError, match="fixed keep mode"):
        model(torch.randn(1, 3, 32, 32))
