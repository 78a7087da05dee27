"""The rival methods' defining properties on hand-computable cases (Top-K, PPT, MCTF, DiffRate) and
what every method must do: train, export, treat each image alone."""

import copy

import pytest
import torch
from conftest import tiny_vit

from dynamicvit.core.losses import build_criterion
from dynamicvit.core.merging import Merge, bipartite_merge_plan, fuse_tokens
from dynamicvit.export import export_onnx
from dynamicvit.methods import apply_method
from dynamicvit.methods.diffrate import survival
from dynamicvit.methods.mctf import mctf_merge_plan, pair_scores
from dynamicvit.methods.ppt import importance_scores, pools
from dynamicvit.methods.tome import bipartite_merge

RIVALS = ["topk", "ppt", "mctf", "diffrate"]


def test_fuse_tokens_averages_by_size_and_adds_sizes():
    x = torch.tensor([[[1.0], [3.0], [10.0], [7.0]]])
    size = torch.tensor([[[1.0], [3.0], [2.0], [1.0]]])
    plan = Merge(torch.tensor([[0, 2]]), torch.tensor([[1, 3]]), torch.tensor([[0, 1]]))
    fused, fused_size = fuse_tokens(x, size, plan)
    assert torch.allclose(fused, torch.tensor([[[(1 + 9) / 4], [(20 + 7) / 3]]]))
    assert torch.equal(fused_size, torch.tensor([[[4.0], [3.0]]]))
    weighted, _ = fuse_tokens(x, size, plan, weight=torch.tensor([[1.0, 0.0, 1.0, 1.0]]))
    assert torch.allclose(weighted[0, 0], torch.tensor([1.0]))  # a zero-weight source adds size only


def test_bipartite_plan_is_tomes_matching():
    x, size, metric = torch.randn(2, 11, 4), torch.rand(2, 11, 1) + 0.5, torch.randn(2, 11, 3)
    expected, expected_size = bipartite_merge(x, size, metric, r=3, prefix=1)
    fused, fused_size = fuse_tokens(x, size, bipartite_merge_plan(metric[:, 1:], 3).shifted(1))
    assert torch.allclose(fused, expected, atol=1e-6) and torch.allclose(fused_size, expected_size)


def test_topk_is_evit_without_its_fused_token():
    dense = tiny_vit().eval()
    topk = apply_method(copy.deepcopy(dense), "topk", keep_rate=0.5).eval()
    evit = apply_method(copy.deepcopy(dense), "evit", keep_rate=0.5, fuse=False).eval()
    x = torch.randn(2, 3, 32, 32)
    a, b = topk.forward_with_decisions(x), evit.forward_with_decisions(x)
    assert torch.equal(a.logits, b.logits) and all(
        torch.equal(p, q) for p, q in zip(a.decisions, b.decisions, strict=True)
    )
    assert topk.token_counts() == topk.keep_counts()  # no extra fused token


def test_ppt_importance_and_policy():
    probs = torch.zeros(1, 2, 4, 4)
    probs[0, :, 0] = torch.tensor([0.1, 0.6, 0.2, 0.1])  # class-token row, both heads
    v = torch.ones(1, 2, 4, 1)
    v[0, :, 3] = 3.0  # token 3's value is 3× longer
    scores = importance_scores(probs, v, prefix=1)
    assert torch.allclose(scores, torch.tensor([[0.6, 0.2, 0.3]]) / 1.1)
    even, peaked = torch.full((1, 4), 0.25), torch.tensor([[0.97, 0.01, 0.01, 0.01]])
    assert pools(even, threshold=0.1).tolist() == [True] and pools(peaked, threshold=0.1).tolist() == [False]


def test_ppt_pools_or_prunes_per_image():
    dense = tiny_vit().eval()
    x = torch.randn(2, 3, 32, 32)
    outputs = {}
    for name, threshold in (("prune", 0.0), ("pool", float("inf"))):
        model = apply_method(copy.deepcopy(dense), "ppt", keep_rate=0.7, ppt_threshold=threshold).eval()
        outputs[name] = model(x)
    assert not torch.allclose(outputs["prune"], outputs["pool"])  # the two policies differ


def test_mctf_plan_by_hand():
    """A0→B0 first (strongest pair), then B2→A2 (strongest pair among the A tokens left)."""
    scores = torch.tensor([[[0.9, 0.1, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.8]]])
    plan = mctf_merge_plan(scores, r=2)  # tokens A = 0, 2, 4; B = 1, 3, 5
    assert plan.anchors.tolist() == [[4, 2, 3, 1]] and plan.sources.tolist() == [[0, 5]]
    assert plan.targets.tolist() == [[3, 0]]  # token 0 joins B0's slot (3), token 5 joins A2's slot (0)


def test_mctf_criteria_prefer_similar_uninformative_small_tokens():
    metric = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    ones = torch.ones(1, 4)
    base = pair_scores(metric, ones, ones)
    assert torch.allclose(base, torch.ones(1, 2, 2))  # identical keys, equal attention and size: all 1
    attended = pair_scores(metric, torch.tensor([[1.0, 1.0, 4.0, 1.0]]), ones)
    assert attended[0, 1, 0] < attended[0, 0, 0]  # token 2 receives more attention: it fuses later
    big = pair_scores(metric, ones, torch.tensor([[1.0, 1.0, 1.0, 5.0]]))
    assert big[0, 0, 1] < big[0, 0, 0]  # token 3 already holds 5 patches


def test_diffrate_survival_is_hard_forward_soft_backward():
    logits = torch.zeros(49, requires_grad=True)
    rank = torch.arange(8)[None]
    keep = survival(logits, torch.tensor(0.5), rank, 8)
    assert keep.tolist() == [[1.0] * 4 + [0.0] * 4]
    keep.sum().backward()
    assert logits.grad.abs().sum() > 0


def test_diffrate_search_forward_is_its_inference_and_trains_the_rates():
    """With merging and pruning in play, the train-mode search (nothing removed, straight-through weights)
    computes what the inference (tokens removed) computes; the MACs term pulls toward the target."""
    dense = tiny_vit().eval()
    model = apply_method(copy.deepcopy(dense), "diffrate", keep_rate=0.7)
    with torch.no_grad():
        model.rate_search.merge.copy_(torch.randn_like(model.rate_search.merge))
    assert any(m < p for p, m in model.eval().counts(64))  # some block merges
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        evaluated = model.eval()(x)
    model.train().requires_grad_(False).rate_search.requires_grad_(True)
    out = model.forward_with_decisions(x)
    assert torch.allclose(out.logits, evaluated, atol=1e-5)
    criterion = build_criterion(model, copy.deepcopy(dense), torch.nn.CrossEntropyLoss(), True, 2.0)
    loss, terms = criterion(x, out, torch.tensor([0, 1, 2]))
    assert "flops" in terms and terms["flops"] > 0  # the random merges moved it off its target
    loss.backward()
    assert model.rate_search.merge.grad.abs().sum() > 0 and model.blocks[0].attn.qkv.weight.grad is None


def test_diffrate_counts_follow_loaded_rates():
    source = apply_method(tiny_vit(), "diffrate", keep_rate=0.5)
    with torch.no_grad():
        source.rate_search.prune.copy_(torch.randn_like(source.rate_search.prune) * 3)
    source.eval()
    model = apply_method(tiny_vit(), "diffrate", keep_rate=0.9).eval()
    model.load_state_dict(source.state_dict())
    assert model.counts(64) == source.counts(64) != apply_method(tiny_vit(), "diffrate", keep_rate=0.9).counts(64)


@pytest.mark.parametrize("method", RIVALS)
def test_batch_of_one_and_export(method, tmp_path):
    model = apply_method(tiny_vit(), method, keep_rate=0.6, r=6).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        batch = model(x)
        assert torch.allclose(torch.cat([model(x[i : i + 1]) for i in range(3)]), batch, atol=1e-5)
    assert export_onnx(model, tmp_path / f"{method}.onnx")["max_abs_diff"] < 1e-4


def test_diffrate_counts_chain_through_the_blocks():
    """A block cannot prune to more tokens than the block before it left: the reported counts are what the
    forward keeps."""
    model = apply_method(tiny_vit(), "diffrate", keep_rate=0.9)
    with torch.no_grad():
        model.rate_search.merge[0].fill_(-20).data[-1] = 20  # block 1 merges down to its smallest candidate
    model.eval()
    prune, merge = model.rate_search.expected()
    assert prune[1] <= merge[0] + 1e-6
    out = model.forward_with_decisions(torch.randn(1, 3, 32, 32))
    assert out.features.shape[1] == 1 + model.token_counts()[-1]


def test_evit_lets_an_earlier_fused_token_compete_in_the_next_top_k():
    """The second stage keeps the class token's top-k of every token after it (the first stage's fused token
    among them) and fuses the rest: read off the block through hooks, independent of the method's code."""
    model = apply_method(tiny_vit(), "evit", keep_rate=0.9, prune_layers=[1, 2]).eval()
    blk, seen = model.blocks[2], {}
    hooks = [
        blk.norm1.register_forward_hook(lambda m, a, o: seen.update(x=a[0])),
        blk.attn.qkv.register_forward_hook(lambda m, a, o: seen.update(qkv=o)),
        blk.attn.proj.register_forward_hook(lambda m, a, o: seen.update(proj=o)),
        blk.norm2.register_forward_hook(lambda m, a, o: seen.update(mlp_in=a[0])),
    ]
    kept_fused = 0
    for seed in range(4):
        torch.manual_seed(seed)
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        b, t, _ = seen["x"].shape
        q, k, _ = seen["qkv"].reshape(b, t, 3, blk.attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        cls = ((q * blk.attn.scale) @ k.transpose(-2, -1)).softmax(-1)[:, :, 0, 1:].mean(1)  # over t - 1 tokens
        post = seen["x"] + seen["proj"]
        count = model.keep_counts()[1]
        order = cls.argsort(dim=1, descending=True)
        keep, drop = order[:, :count], order[:, count:]
        rest = post[:, 1:]
        extra = (rest.gather(1, drop[..., None].expand(-1, -1, rest.shape[-1])) * cls.gather(1, drop)[..., None]).sum(1)
        expected = torch.cat([post[:, :1], rest.gather(1, keep[..., None].expand(-1, -1, rest.shape[-1])),
                              extra[:, None]], dim=1)  # fmt: skip
        assert torch.allclose(seen["mlp_in"], expected, atol=1e-5)
        kept_fused += int((keep == t - 2).any(dim=1).sum())  # the earlier fused token is the last one
    assert kept_fused > 0  # the case the old rule (always fold it into the new one) got wrong was exercised
    for h in hooks:
        h.remove()
