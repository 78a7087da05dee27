import math

import pytest
import torch
from conftest import tiny_vit
from hypothesis import given, settings
from hypothesis import strategies as st

import dynamicvit
from dynamicvit.core.predictor import TokenPredictor, check_keep_rate, decide, gumbel_keep_mask, keep_counts


def test_keep_counts_match_paper_schedule():
    assert keep_counts(196, 0.7, 3) == [137, 96, 67]
    assert keep_counts(196, 0.9, 3) == [176, 158, 142]
    assert keep_counts(100, 0.7, 2) == [70, 49]  # 0.7**2 * 100 is 48.999… in floating point
    assert keep_counts(4, 0.1, 3) == [1, 1, 1]  # never zero tokens


@pytest.mark.parametrize("bad", [0, -0.5, 1.01, float("nan"), "x", None])
def test_keep_rate_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="keep_rate"):
        check_keep_rate(bad)


def test_predictor_outputs_log_probabilities():
    pred = TokenPredictor(32)
    out = pred(torch.randn(2, 10, 32))
    assert out.shape == (2, 10, 2)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 10), atol=1e-6)


def test_split_projection_equals_concat_reference():
    """The per-image projection of the global half equals the paper's concat → Linear."""
    pred = TokenPredictor(16).double()
    x = torch.randn(3, 7, 16, dtype=torch.double)
    policy = (torch.rand(3, 7, 1) > 0.3).double()
    policy[:, 0] = 1
    h = pred.in_conv(x)
    local, glob = h[..., :8], h[..., 8:]
    glob = (glob * policy).sum(1, keepdim=True) / policy.sum(1, keepdim=True)
    ref = pred.out_conv(torch.cat([local, glob.expand_as(local)], -1))
    assert torch.allclose(pred(x, policy), ref, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 20), hidden=st.sampled_from([None, 8, 24]))
def test_keep_score_is_the_log_odds_of_keep(b, n, hidden):
    """The eval score (one output, no softmax) is log p_keep - log p_drop, so it ranks as the log-probability;
    for a predictor of the model's width and for narrower or wider ones."""
    pred = TokenPredictor(16, hidden=hidden).double()
    for p in pred.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(b, n, 16, dtype=torch.double)
    log_probs = pred(x)
    score = pred.keep_score(x)
    assert score.shape == (b, n)
    assert torch.allclose(score, log_probs[..., 0] - log_probs[..., 1], atol=1e-10)
    assert torch.equal(score.argsort(dim=1), log_probs[..., 0].argsort(dim=1))
    seg = torch.arange(b).repeat_interleave(n)  # the same tokens packed, each image's mean over its own rows
    assert torch.allclose(pred.keep_score_packed(x.reshape(b * n, 16), seg, b), score.reshape(-1), atol=1e-10)


def test_global_summary_ignores_dropped_tokens():
    pred = TokenPredictor(16)
    x = torch.randn(1, 6, 16)
    policy = torch.tensor([1.0, 1, 1, 0, 0, 0]).view(1, 6, 1)
    garbage = x.clone()
    garbage[:, 3:] = 100.0  # dropped tokens must not influence alive tokens' scores
    assert torch.allclose(pred(x, policy)[:, :3], pred(garbage, policy)[:, :3], atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 4), n=st.integers(1, 30))
def test_gumbel_masks_are_hard_and_nested(b, n):
    log_probs = torch.randn(b, n, 2).log_softmax(-1)
    prev = (torch.rand(b, n) > 0.5).float()
    mask = gumbel_keep_mask(log_probs, prev)
    assert mask.shape == (b, n)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert bool((mask <= prev).all())


def test_gumbel_mask_is_straight_through():
    logits = torch.randn(2, 5, 2, requires_grad=True)
    gumbel_keep_mask(logits.log_softmax(-1), torch.ones(2, 5)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_even_width_required():
    with pytest.raises(ValueError, match="even width >= 8, got 31"):
        TokenPredictor(31)
    with pytest.raises(ValueError, match="even width >= 8, got 4"):
        TokenPredictor(32, hidden=4)
    assert math.isclose(check_keep_rate(1), 1.0)


@pytest.mark.parametrize("rate", [0.7, 0.9])  # not 0.5: a zero bias gives 0.5**s too
def test_fresh_predictors_start_at_the_target_budget(rate):
    """Train-mode masks of an untrained model keep about rho**s of the tokens, not 50/25/12.5%."""
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=rate).train()
    masks = model(torch.randn(64, 3, 32, 32), return_decisions=True).decisions
    for s, m in enumerate(masks, start=1):
        assert abs(m.mean().item() - rate**s) < 0.05


def test_decide_train_mask_is_nested_in_the_previous_one():
    predictor = TokenPredictor(16)
    tokens, previous = torch.randn(3, 10, 16), (torch.rand(3, 10) > 0.5).float()
    mask = decide(predictor, tokens, 0, True, previous)
    assert mask.shape == (3, 10) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask <= previous).all()
    forced = torch.ones(3, 10)
    assert torch.equal(decide(predictor, tokens, 0, True, previous, forced), previous)


def test_decide_eval_takes_the_top_scored_positions():
    predictor = TokenPredictor(16).eval()
    tokens = torch.randn(2, 10, 16)
    keep = decide(predictor, tokens, 4, False)
    assert torch.equal(keep, predictor.keep_score(tokens).topk(4, dim=1).indices)
    alive = torch.tensor([[9, 8, 7, 6, 5, 4, 3, 2, 1, 0]] * 2)  # tokens are the grid in reverse
    forced = torch.tensor([[9], [0]])
    assert torch.equal(decide(predictor, tokens, 1, False, alive, forced, 12), torch.tensor([[0], [9]]))
