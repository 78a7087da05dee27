"""The learned per-image budget: the soft top-k training mask, packed per-image top-k, the learned keep mode
of a ViT (train and eval, batch invariance), its calibration, checkpoints and training."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_cfg, tiny_vit
from hypothesis import given, settings
from hypothesis import strategies as st

import dynamicvit
from dynamicvit.builder import load_trained
from dynamicvit.cli import main
from dynamicvit.config import validate
from dynamicvit.core.calibrate import calibrate
from dynamicvit.core.learned_budget import learned_counts, soft_topk_mask, topk_keep_packed
from dynamicvit.train.trainer import Trainer
from dynamicvit.weights.checkpoint import save_checkpoint


def learned_vit(**kw) -> torch.nn.Module:
    """A tiny DynamicViT in the learned mode whose budgets and scores differ between images."""
    model = dynamicvit.sparsify(tiny_vit(**kw), keep_rate=0.7)
    model.keep_mode = "learned"
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in [*model.score_predictor.parameters(), *model.budget_predictor.parameters()]:
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 5), tokens=st.integers(2, 30), seed=st.integers(0, 10_000))
def test_soft_topk_keeps_each_image_its_count_of_its_best(batch, tokens, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, tokens, generator=g)
    alive = (torch.rand(batch, tokens, generator=g) < 0.7).float()
    alive[:, 0] = 1
    ratio = torch.rand(batch, generator=g)
    mask = soft_topk_mask(scores, alive, ratio, noise=False)
    expected = learned_counts(ratio, alive.sum(1))
    assert torch.equal(mask.sum(1).round().long(), expected)
    assert bool((mask <= alive).all())
    for i in range(batch):  # the kept ones are the best-scored alive ones
        alive_scores = scores[i][alive[i] > 0]
        assert bool(scores[i][mask[i] > 0.5].min() >= alive_scores.sort(descending=True).values[expected[i] - 1])


def test_the_soft_mask_carries_gradient_to_budgets_and_scores():
    """More budget ⇒ a larger soft mask; the hard forward stays the top-k set."""
    scores = torch.randn(2, 10, requires_grad=True)
    ratio = torch.tensor([0.3, 0.6], requires_grad=True)
    mask = soft_topk_mask(scores, torch.ones(2, 10), ratio, noise=False)
    mask.sum().backward()
    assert bool((ratio.grad > 0).all()) and scores.grad.abs().sum() > 0
    assert mask.detach().sum(1).tolist() == [3.0, 6.0]


def test_packed_topk_equals_per_image_topk():
    g = torch.Generator().manual_seed(0)
    sizes = [5, 1, 9, 3]
    score = torch.randn(sum(sizes), generator=g)
    seg = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    counts = torch.tensor([2, 1, 9, 1])
    keep = topk_keep_packed(score, seg, counts)
    for i, part in enumerate(score.split(sizes)):
        chosen = keep[seg == i]
        assert int(chosen.sum()) == counts[i]
        assert set(chosen.nonzero().squeeze(1).tolist()) == set(part.topk(int(counts[i])).indices.tolist())


def test_learned_mode_trains_and_runs_per_image_counts():
    """Train mode: each image's mask holds its budget's count; eval: the same rule, packed, counts differ
    per image, and an image's output never depends on its batch."""
    model = learned_vit()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model.train()
    masks = model.forward_with_decisions(x).decisions
    assert len({int(m) for m in masks[0].sum(1)}) > 1  # images keep different counts in training
    assert bool(((masks[1] > 0.5) <= (masks[0] > 0.5)).all())  # nested
    model.eval()
    with torch.no_grad():
        out = model.forward_with_decisions(x)
        kept = [[len(d) for d in stage] for stage in out.decisions]
        assert len(set(kept[0])) > 1
        for i in range(8):
            alone = model.forward_with_decisions(x[i : i + 1])
            torch.testing.assert_close(out.logits[i], alone.logits[0], atol=1e-4, rtol=1e-4)
            assert torch.equal(out.decisions[-1][i].sort().values, alone.decisions[-1][0].sort().values)


def test_a_fresh_budget_keeps_the_schedule_and_the_mode_is_checked():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.5).eval()
    model.keep_mode = "learned"
    with torch.no_grad():
        kept = [[len(d) for d in stage] for stage in model.forward_with_decisions(torch.randn(3, 3, 32, 32)).decisions]
    assert kept == [[32, 32, 32], [16, 16, 16], [8, 8, 8]]  # round(64·0.5), then half of those alive
    tome = dynamicvit.apply_method(tiny_vit(), "tome")
    with pytest.raises(TypeError, match="no learned keep mode"):
        tome.keep_mode = "learned"
    with pytest.raises(ValueError, match="fixed, threshold, learned"):
        model.keep_mode = "learnt"


def test_calibration_sets_the_mean_budget_and_it_travels_with_the_weights(tmp_path, fake_fashion, capsys):
    model = learned_vit(img_size=28, patch_size=7, in_chans=1)
    images = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    r = calibrate(model, images, targets=[0.5, 0.3, 0.2])
    assert r["mode"] == "learned" and len(r["offsets"]) == 3
    for goal, got in zip(r["targets"], r["reached"], strict=True):
        assert abs(goal - got) < 0.02  # counts are integers per image: within one token in 64 images
    kwargs = {"img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32, "depth": 4, "num_heads": 2}
    config = {"model": "vit_tiny_patch16_224", "model_kwargs": kwargs, "keep_mode": "learned"}
    config |= {"data": "fashion-mnist", "data_dir": str(fake_fashion), "ratio_loss": "batch"}
    save_checkpoint(model, tmp_path / "learned.pth", config=config)
    loaded, _ = load_trained(str(tmp_path / "learned.pth"))
    assert loaded.keep_mode == "learned"
    assert [float(b.offset) for b in loaded.budget_predictor] == r["offsets"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(images[:4]), model.eval()(images[:4]))
    fixed, _ = load_trained(str(tmp_path / "learned.pth"), keep_mode="fixed")  # the ranking runs alone too
    assert fixed.keep_mode == "fixed"
    out = tmp_path / "calibrated.pth"
    assert main(["calibrate", "--checkpoint", str(tmp_path / "learned.pth"), "--out", str(out), "--images", "32"]) == 0
    assert "offset" in capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(out), "--val-limit", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["per_image"]["images"] == 16


def test_training_in_the_learned_mode(tmp_path, fake_fashion):
    """A run with --keep-mode learned trains the budget predictors (they move) and saves them; it needs the
    keep-ratio term on the batch."""
    teacher = tiny_cfg(tmp_path, fake_fashion, "teacher", dense=True, epochs=1)
    with Trainer(teacher) as run:
        run.fit()
    cfg = tiny_cfg(
        tmp_path, fake_fashion, "learned", teacher_checkpoint=str(tmp_path / "teacher" / "last.pth"), epochs=1
    )
    cfg.budget.keep_mode = "learned"
    with pytest.raises(ValueError, match="--ratio-loss batch"):
        validate(cfg, training=True)
    cfg.loss.ratio_loss = "batch"
    with Trainer(cfg) as run:
        start = [p.detach().clone() for p in run.model.budget_predictor.parameters()]
        run.fit()
        moved = [
            not torch.equal(a, b.detach()) for a, b in zip(start, run.model.budget_predictor.parameters(), strict=True)
        ]
    assert any(moved)
    loaded, _ = load_trained(str(tmp_path / "learned" / "last.pth"))
    assert loaded.keep_mode == "learned"
