"""Each rival as its authors' code runs it (ToMe, MCTF, PPT, DiffRate): every test here fails on the harness's
earlier reading of that method."""

import copy

import pytest
import torch
from conftest import tiny_cfg, tiny_vit

from dynamicvit.builder.models import build_untrained, reduce
from dynamicvit.core.flops import count_flops
from dynamicvit.core.merging import Merge, bipartite_merge_plan, soft_merge
from dynamicvit.methods import METHODS, apply_method, set_budget
from dynamicvit.methods import mctf as mctf_module
from dynamicvit.methods.common import spread
from dynamicvit.methods.mctf import MIN_TOKENS, fuse_attention
from dynamicvit.methods.ppt import PPT_FINETUNED_THRESHOLD, PPT_THRESHOLD, pools
from dynamicvit.methods.tome import bipartite_merge


# -- ToMe ---------------------------------------------------------------------------------------------------------
def test_tome_keeps_unmerged_tokens_in_order_of_position():
    """A tokens 0, 2, 4 (patches 0, 2, 4); A0 and A4 have weak edges, A2 the strongest: A2 merges, A0 and A4
    stay, in that order (the edge order would put A4 first)."""
    metric = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.6, 0.8], [0.0, 1.0]]])
    x = torch.arange(6.0).reshape(1, 6, 1)
    merged, _ = bipartite_merge(x, torch.ones(1, 6, 1), metric, r=1, prefix=0)
    assert merged[0, :2, 0].tolist() == [0.0, 4.0]
    plan = bipartite_merge_plan(metric, 1)
    assert plan.anchors[0, :2].tolist() == [0, 4]


def test_tome_proportional_attention_only_off_the_shelf(tmp_path, fake_fashion):
    finetune = tiny_cfg(tmp_path, fake_fashion, method="tome", merge_r=4.0, epochs=2, freeze_backbone_epochs=0)
    frozen = tiny_cfg(tmp_path, fake_fashion, method="tome", merge_r=4.0, epochs=2, freeze_backbone_epochs=2)
    assert reduce(tiny_vit(), finetune).prop_attn is False
    assert reduce(tiny_vit(), frozen).prop_attn is True
    assert build_untrained("vit_tiny_patch16_224", "tome", img_size=32).prop_attn is True
    x = torch.randn(2, 3, 32, 32)
    dense = tiny_vit().eval()
    on = apply_method(copy.deepcopy(dense), "tome", r=8).eval()
    off = apply_method(copy.deepcopy(dense), "tome", r=8, prop_attn=False).eval()
    assert not torch.allclose(on(x), off(x))


# -- fractional r ---------------------------------------------------------------------------------------------------
def test_spread_adds_up_to_the_fraction():
    assert spread(3, 4) == [3, 3, 3, 3]
    assert spread(2.5, 4) == [3, 2, 3, 2] and sum(spread(2.5, 10)) == 25
    assert spread(0.0, 3) == [0, 0, 0]


@pytest.mark.parametrize("method", ["tome", "mctf"])
def test_merging_methods_land_on_a_budget_no_integer_r_reaches(method):
    dense = tiny_vit().eval()
    dense_macs = count_flops(dense).total
    model = apply_method(copy.deepcopy(dense), method, r=1)
    for budget in (0.55, 0.65, 0.8):
        assert abs(set_budget(model, budget, dense_macs) - budget) < 0.02 * budget


# -- MCTF -----------------------------------------------------------------------------------------------------------
def test_mctf_compares_the_block_input_not_the_keys(monkeypatch):
    model = apply_method(tiny_vit(), "mctf", r=4).eval()
    seen, inputs = [], []
    original = mctf_module.pair_scores
    monkeypatch.setattr(mctf_module, "pair_scores", lambda metric, *a: seen.append(metric) or original(metric, *a))
    model.blocks[1].norm1.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))  # first: the block's input
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert torch.equal(seen[0], inputs[0][:, 1:])


def test_mctf_fuses_the_attention_matrix_by_hand():
    """Tokens 0..3, token 3 fused into token 1: its key column is added to token 1's, its query row averaged
    with token 1's by the fusion weights."""
    probs = torch.rand(1, 1, 4, 4).softmax(-1)
    plan = Merge(torch.tensor([[0, 1, 2]]), torch.tensor([[3]]), torch.tensor([[1]]))
    weight = torch.tensor([[1.0, 2.0, 1.0, 6.0]])
    fused = fuse_attention(probs, plan, weight)[0, 0]
    cols = torch.stack([probs[0, 0, :, 0], probs[0, 0, :, 1] + probs[0, 0, :, 3], probs[0, 0, :, 2]], dim=1)
    rows = torch.stack([cols[0], (2 * cols[1] + 6 * cols[3]) / 8, cols[2]])
    assert torch.allclose(fused, rows, atol=1e-6)
    assert torch.allclose(fused.sum(-1), torch.ones(3))  # still a distribution over the fused keys


def test_mctf_costs_no_matmul_beyond_the_blocks_own():
    """qk on the tokens a block receives, the values, projection and MLP on the fused ones, the pair search:
    nothing else (the earlier reading computed every value and applied each query's attention unfused)."""
    dense = tiny_vit().eval()
    c, hidden = 32, 128

    def block(n: int, r: int) -> int:
        if not r:
            return 3 * n * c * c + 2 * n * n * c + n * c * c + 2 * n * c * hidden
        m, p = n - r, n - 1
        return 2 * n * c * c + n * n * c + m * m * c + 2 * m * c * c + 2 * m * c * hidden + (p - p // 2) * (p // 2) * c

    outside = count_flops(dense).total - 4 * block(65, 0)
    model = apply_method(copy.deepcopy(dense), "mctf", r=6).eval()
    n, expected = 65, outside
    for r in model.merge_counts():
        expected, n = expected + block(n, r), n - r
    assert count_flops(model).total == expected


def test_mctf_stops_fusing_at_ten_tokens():
    model = apply_method(tiny_vit(), "mctf", r=8)
    assert model.merge_counts(16) == [0, 7, 0, 0]  # 17 → 10 tokens, the class token included; then no more
    assert model.token_counts(16)[-1] + 1 == MIN_TOKENS
    assert model.merge_counts(64) == [0, 8, 8, 8]


def test_mctf_consistency_loss_when_fine_tuned(tmp_path, fake_fashion):
    cfg = tiny_cfg(tmp_path, fake_fashion, method="mctf", merge_r=4.0, epochs=2, freeze_backbone_epochs=0)
    model = reduce(tiny_vit(), cfg).train()
    assert model.consistency and not apply_method(tiny_vit(), "mctf").consistency
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = model.forward_with_decisions(x)
    with torch.no_grad():  # a head that is sure of every label: every image passes the confidence test
        model.head.weight.zero_(), model.head.bias.copy_(torch.arange(10.0) * 0)
    terms = model.method_loss(x, out, y)
    assert set(terms) == {"second_ce", "consistency"} and terms["second_ce"] > 0
    model.consistency = False
    assert model.method_loss(x, out, y) == {}


# -- PPT ------------------------------------------------------------------------------------------------------------
def test_ppt_threshold_is_the_authors_plain_variance():
    """36 normalised scores with variance just under / over 7e-5: pool / prune (a threshold scaled from 196
    tokens, the earlier reading, pools both)."""
    base = torch.full((1, 36), 1 / 36)
    for target, pooled in ((6.5e-5, True), (7.5e-5, False)):
        bump = torch.tensor([1.0, -1.0] * 18)[None] * (target * 35 / 36) ** 0.5
        scores = base + bump
        assert abs(scores.var().item() - target) < 1e-7
        assert pools(scores, PPT_THRESHOLD).tolist() == [pooled]
    assert METHODS["ppt"].regime_options(True) == {"ppt_threshold": PPT_FINETUNED_THRESHOLD}
    assert METHODS["ppt"].regime_options(False) == {"ppt_threshold": PPT_THRESHOLD}


def test_ppt_removes_the_same_number_at_every_stage():
    model = apply_method(tiny_vit(), "ppt", keep_rate=0.75)
    assert model.keep_counts(64) == [48, 32, 16]  # 16 removed at each stage (ρ^s would keep 48, 36, 27)
    assert model.keep_counts(196) == [147, 98, 49]  # the authors' 50 of 196 at blocks 3, 6, 9 (cumulative rounding)


# -- DiffRate -------------------------------------------------------------------------------------------------------
def test_diffrate_starts_uniform_and_searches_at_the_authors_rate(tmp_path, fake_fashion):
    model = apply_method(tiny_vit(), "diffrate", keep_rate=0.6)
    assert not model.rate_search.prune.any() and not model.rate_search.merge.any()  # zero logits: uniform
    assert apply_method(tiny_vit(), "diffrate", keep_rate=0.9).macs_target > model.macs_target
    cfg = tiny_cfg(tmp_path, fake_fashion, method="diffrate", lr=1e-3, backbone_lr_scale=0.1, epochs=1)
    recipe = METHODS["diffrate"].authors_recipe(cfg)  # fine-tunes: the search, then the recipe's epoch
    assert (recipe["lr"], recipe["min_lr"], recipe["epochs"], recipe["freeze_backbone_epochs"]) == (0.01, 0.001, 4, 3)
    assert recipe["lr"] * recipe["backbone_lr_scale"] == pytest.approx(1e-4)  # the backbone keeps the recipe's
    frozen = METHODS["diffrate"].authors_recipe(cfg.replace(freeze_backbone_epochs=1))
    assert (frozen["epochs"], frozen["freeze_backbone_epochs"]) == (3, 3)  # the authors' three epochs of search


def test_diffrate_merge_is_a_plain_mean_with_similarity_scaled_sizes():
    """Token 2 (size 3) joins token 1 (size 1): their plain mean, size 1 + 3 × their cosine similarity."""
    x = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.6, 0.8]]])
    size = torch.tensor([[[1.0], [1.0], [3.0]]])
    merged, merged_size = soft_merge(x, size, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), 1, mean=True)
    assert torch.allclose(merged[0, 1], torch.tensor([0.8, 0.4]))
    assert merged_size[0, 1, 0].item() == pytest.approx(1 + 3 * 0.6)
    weighted, weighted_size = soft_merge(x, size, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), 1)
    assert torch.allclose(weighted[0, 1], torch.tensor([(1 + 1.8) / 4, 2.4 / 4]))  # ToMe's rule: by size
    assert weighted_size[0, 1, 0].item() == 4.0


def test_dynamicvit_fine_tuned_learns_its_predictors_first(tmp_path, fake_fashion):
    """The release freezes the backbone while the predictors start: a fine-tuning recipe gets one predictor-only
    epoch before its own; a frozen recipe is left alone."""
    cfg = tiny_cfg(tmp_path, fake_fashion, epochs=1, freeze_backbone_epochs=0.0)
    recipe = METHODS["dynamicvit"].authors_recipe(cfg)
    assert (recipe["epochs"], recipe["freeze_backbone_epochs"]) == (2, 1.0)
    assert METHODS["dynamicvit"].authors_recipe(cfg.replace(freeze_backbone_epochs=1.0)) == {}
