"""DynamicViT with the attention prior: it starts as Top-K, train and eval agree, training moves it, it merges,
exports and round-trips through a checkpoint; where it cannot run it says so."""

import copy

import pytest
import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.core.attention_prior import log_prior, received_attention
from dynamicvit.export import export_onnx
from dynamicvit.methods.registry import apply_method


def _prior(kind="plain", keep_rate=0.6, merge=False, seed=0, **overrides):
    torch.manual_seed(seed)
    model = dynamicvit.sparsify(tiny_vit(kind, **overrides), keep_rate=keep_rate)
    model.use_attention_prior()
    model.merge_dropped = merge
    return model


@pytest.mark.parametrize("kind", ["plain", "registers", "distilled"])
def test_a_fresh_prior_keeps_top_k_tokens(kind):
    """Before training the kept set and the logits are Top-K's (class attention inside the stage's block)."""
    model = _prior(kind).eval()
    topk = apply_method(copy.deepcopy(tiny_vit(kind)), "topk", keep_rate=0.6)
    topk.load_state_dict(model.state_dict(), strict=False)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours, theirs = model.forward_with_decisions(x), topk.forward_with_decisions(x)
    for a, b in zip(ours.decisions, theirs.decisions, strict=True):
        assert torch.equal(a.sort(dim=1).values, b.sort(dim=1).values)
    assert torch.allclose(ours.logits, theirs.logits, atol=1e-5)


@pytest.mark.parametrize(
    "kind,merge,overrides",
    [
        ("plain", False, {}),
        ("plain", True, {}),
        ("registers", True, {}),
        ("plain", False, {"class_token": False, "global_pool": "avg"}),  # attention received over the queries
    ],
)
def test_train_masks_equal_eval_gather(kind, merge, overrides):
    """Same weights, same kept tokens → same logits in train and eval mode, with and without merging."""
    model = _prior(kind, merge=merge, **overrides)
    with torch.no_grad():
        for p in model.score_predictor.parameters():
            p.normal_(0, 0.3)  # a trained predictor: the prior no longer decides alone
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pruned = model.eval().forward_with_decisions(x)
        masks = [torch.zeros(2, 64).scatter(1, d, 1.0) for d in pruned.decisions]
        masked = model.train().forward_with_decisions(x, decisions=masks)
    assert torch.allclose(masked.logits, pruned.logits, atol=1e-4)


def test_the_prior_changes_the_kept_set_and_its_weight_trains():
    model = _prior().train()
    out = model.forward_with_decisions(torch.randn(4, 3, 32, 32))
    out.logits.logsumexp(-1).sum().backward()
    predictor = model.score_predictor[0]
    assert predictor.prior_weight.grad is not None and predictor.prior_weight.grad.abs() > 0
    assert predictor.out_conv[-2].weight.grad.abs().sum() > 0  # the zero-started layer learns
    plain = dynamicvit.sparsify(tiny_vit(), keep_rate=0.6).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "prior_weight" not in k})
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        ours, without = model.eval().forward_with_decisions(x), plain(x, return_decisions=True)
        assert not torch.equal(ours.decisions[0], without.decisions[0])


def test_received_attention_reads_the_class_row_or_the_mean_over_queries():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    attn = ((q * 0.5) @ k.transpose(-2, -1)).softmax(-1).mean(1)
    assert torch.allclose(received_attention(q, k, 0.5, prefix=1), attn[:, 0, 1:])
    assert torch.allclose(received_attention(q, k, 0.5, prefix=0), attn.mean(1))
    policy = torch.tensor([[1.0, 1, 0, 1, 1], [1, 1, 1, 1, 1]])
    logits = ((q * 0.5) @ k.transpose(-2, -1)).masked_fill(policy[:, None, None, :] == 0, -torch.inf)
    expected = logits.softmax(-1).mean(1)[:, 0, 1:]  # the dropped key (patch 1 of image 0) receives nothing
    masked = received_attention(q, k, 0.5, prefix=1, policy=policy)
    assert masked[0, 1] == 0 and torch.allclose(masked, expected)
    alive = policy[:, None, :, None]  # without a prefix: the mean over the alive queries
    assert torch.allclose(
        received_attention(q, k, 0.5, prefix=0, policy=policy),
        (logits.softmax(-1).mean(1)[..., None, :, :] * alive).sum(2)[:, 0] / policy.sum(1, keepdim=True),
    )
    assert torch.allclose(log_prior(torch.full((1, 4), 0.25)), torch.zeros(1, 4))


def test_prior_models_merge_batch_independently_and_export(tmp_path):
    model = _prior(merge=True).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.score_predictor.parameters():
            p.normal_(0, 0.5)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(torch.cat([model(x[i : i + 1]) for i in range(3)]), model(x), atol=1e-5)
    assert export_onnx(model, tmp_path / "prior.onnx")["max_abs_diff"] < 1e-4


def test_where_the_prior_cannot_run_it_says_so():
    model = _prior().eval()
    model.keep_mode = "threshold"
    with pytest.raises(ValueError, match="fixed keep mode"):
        model(torch.randn(1, 3, 32, 32))
    beit = dynamicvit.create_model("beit_base_patch16_224", img_size=32, depth=4, embed_dim=64, num_heads=2)
    with pytest.raises(ValueError, match="plain timm ViT blocks"):
        beit.use_attention_prior()


@pytest.mark.parametrize("prior", [False, True])
def test_narrower_predictors_cost_fewer_macs_keep_the_same_counts_and_round_trip(tmp_path, prior):
    """--predictor-width: the same kept counts for a fraction of the predictors' MACs, with or without the
    prior; a checkpoint of such a model loads back into the same layout and outputs, an image's output does
    not depend on its batch, and it exports to ONNX; a method without DynamicViT's predictors refuses it in
    one line."""
    from dynamicvit.builder import build_dense, configure_reducer, load_trained
    from dynamicvit.builder.models import reduce
    from dynamicvit.config import RunConfig
    from dynamicvit.core.flops import count_flops

    cfg = RunConfig.of(
        model="vit_tiny_patch16_224",
        model_kwargs={"depth": 4, "embed_dim": 32, "num_heads": 2, "patch_size": 4},
        img_size=32,
        keep_rate=0.6,
        predictor_width=0.25,
        attention_prior=prior,
    )
    torch.manual_seed(0)
    narrow = reduce(build_dense(cfg, 10, 3), cfg).eval()
    paper = reduce(build_dense(cfg, 10, 3), cfg.replace(predictor_width=1.0, attention_prior=False)).eval()
    assert narrow.score_predictor[0].in_conv[1].out_features == 8 and narrow.attention_prior == prior
    ours, theirs = count_flops(narrow), count_flops(paper)
    assert ours.tokens == theirs.tokens and ours.parts["predictors"] < theirs.parts["predictors"] / 3
    with torch.no_grad():
        for p in narrow.score_predictor.parameters():
            p.normal_(0, 0.5)
    loaded, _ = load_trained({"model": narrow.state_dict(), "config": cfg.to_dict()})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), narrow(x))
        assert torch.allclose(torch.cat([narrow(x[:1]), narrow(x[1:])]), narrow(x), atol=1e-5)
    assert export_onnx(narrow, tmp_path / "narrow.onnx")["max_abs_diff"] < 1e-4
    with pytest.raises(ValueError, match="--predictor-width is DynamicViT's"):
        configure_reducer(apply_method(tiny_vit(), "tome"), cfg.replace(attention_prior=False, method="tome"))
