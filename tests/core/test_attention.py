"""The train-mode masked attention: the fused autograd function against the release's masked softmax."""

import pytest
import torch

import dynamicvit
import dynamicvit.core.attention as attention
from dynamicvit.core.attention import (
    FusedMaskedAttention,
    fused_masked_attention,
    masked_attention,
    masked_softmax,
    reference_masked_attention,
)
from tests.conftest import tiny_vit


def test_masked_softmax_matches_reference_and_keeps_diagonal():
    logits = torch.randn(2, 3, 5, 5)
    policy = torch.tensor([[1.0, 0, 1, 0, 1], [1, 1, 0, 0, 0]])
    w = masked_softmax(logits, policy)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 5), atol=1e-6)
    allowed = policy[:, None, None, :].bool() | torch.eye(5, dtype=torch.bool)
    ref = logits.masked_fill(~allowed, float("-inf")).softmax(-1)
    assert torch.allclose(w, ref, atol=1e-5)
    assert bool((w.diagonal(dim1=-2, dim2=-1) > 0).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_masked_softmax_is_float32_safe_under_low_precision(dtype):
    logits = (torch.randn(1, 1, 8, 8) * 300).to(dtype)  # overflows exp() in half precision
    w = masked_softmax(logits, torch.zeros(1, 8))
    assert w.dtype == torch.float32 and torch.isfinite(w).all()
    assert torch.allclose(w.sum(-1), torch.ones(1, 1, 8))


def _inputs(dtype=torch.float32, n=9, bias=True, dropped_ahead=0.0, soft=False):
    """q, k, v (2, 3, n, 4), a policy (2, n) and a bias (1, 3, n, n), all requiring gradients.
    ``dropped_ahead`` raises dropped keys' logits by about that much at scale 0.5 (a trained model's rows)."""
    q, k, v = (torch.randn(2, 3, n, 4, dtype=dtype) for _ in range(3))
    policy = (torch.rand(2, n) > 0.5).to(dtype)
    policy[:, 0] = 1
    if soft:
        policy = policy * torch.rand(2, n, dtype=dtype)
    if dropped_ahead:  # a shared direction: every query points along it, dropped keys too
        lift = (2 * dropped_ahead) ** 0.5
        q[..., 0] += lift
        k[..., 0] += lift * (policy == 0).to(dtype)[:, None, :]
    b = torch.randn(1, 3, n, n, dtype=dtype) if bias else None
    leaves = [t.requires_grad_() for t in (q, k, v, policy, b) if t is not None]
    return (q, k, v, policy, b), leaves


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("soft", [False, True])
def test_fused_gradients_pass_gradcheck_in_float64(bias, soft):
    """Every input's gradient, the policy's and the bias's included, against finite differences; a large
    eps makes the smoothing (and its path through the row maximum) weigh in the check."""
    (q, k, v, policy, b), _ = _inputs(torch.float64, bias=bias, soft=soft)
    fn = lambda q, k, v, p, b: FusedMaskedAttention.apply(q, k, v, p, b, 0.5, 1e-2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k, v, policy, b))


@pytest.mark.parametrize("dropped_ahead", [0.0, 18.0])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_equals_the_release_masked_softmax_in_float32(dropped_ahead, bias):
    """Outputs within 1e-5 and the same gradients, on random logits and on logits where the dropped keys
    sit 18 above the visible ones (where the 1e-6 smoothing decides the weights)."""
    inputs, leaves = _inputs(n=17, bias=bias, dropped_ahead=dropped_ahead)
    q, k, v, policy, b = inputs
    fused = FusedMaskedAttention.apply(q, k, v, policy, b, 0.5)
    ref = reference_masked_attention(q, k, v, policy, 0.5, torch.nn.Identity(), b)
    assert (fused - ref).abs().max() < 1e-5
    grad = torch.randn_like(ref)
    for a, r in zip(torch.autograd.grad(fused, leaves, grad), torch.autograd.grad(ref, leaves, grad), strict=True):
        assert torch.allclose(a, r, rtol=1e-4, atol=1e-5 * r.abs().max().item())
    if dropped_ahead:  # the smoothing matters here: a plain masked softmax would be far off
        allowed = (policy > 0)[:, None, None, :] | torch.eye(17, dtype=torch.bool)
        logits = (q * 0.5) @ k.transpose(-2, -1) + (0 if b is None else b)
        plain = logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
        assert (plain - ref).abs().max() > 0.1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_is_safe_under_cpu_autocast(dtype):
    (q, k, v, policy, b), leaves = _inputs(n=17)
    with torch.autocast("cpu", dtype=dtype):
        qh, kh, vh = (t.to(dtype) for t in (q, k, v))
        fused = masked_attention(qh * 40, kh, vh, policy, 0.5, torch.nn.Identity(), b)  # large logits
        ref = reference_masked_attention(qh * 40, kh, vh, policy, 0.5, torch.nn.Identity(), b)
    assert fused.dtype == dtype and torch.isfinite(fused).all()
    assert torch.allclose(fused.float(), ref.float(), atol=0.05)
    grads = torch.autograd.grad(fused.float().sum(), leaves)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_on_cuda_equals_the_reference_under_autocast(dtype):
    inputs, leaves = _inputs(n=33)
    q, k, v, policy, b = (t.detach().cuda().requires_grad_() for t in inputs)
    with torch.autocast("cuda", dtype=dtype):
        fused = masked_attention(q * 10, k, v, policy, 0.5, torch.nn.Identity(), b)
        ref = reference_masked_attention(q * 10, k, v, policy, 0.5, torch.nn.Identity(), b)
    assert fused.is_cuda and torch.allclose(fused.float(), ref.float(), atol=0.02)
    grads = torch.autograd.grad(fused.float().sum(), (q, k, v, policy, b))
    ref_grads = torch.autograd.grad(ref.float().sum(), (q, k, v, policy, b))
    for g, r in zip(grads, ref_grads, strict=True):
        assert torch.isfinite(g).all() and torch.allclose(g.float(), r.float(), atol=0.05 * r.abs().max().item())


def test_dropout_and_the_switch_take_the_reference_path(monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "reference_masked_attention", lambda *a: calls.append(1) or a[0])
    (q, k, v, policy, b), _ = _inputs()
    masked_attention(q, k, v, policy, 0.5, torch.nn.Dropout(0.0).train(), b)
    masked_attention(q, k, v, policy, 0.5, torch.nn.Dropout(0.3).eval(), b)
    assert calls == []
    masked_attention(q, k, v, policy, 0.5, torch.nn.Dropout(0.3).train(), b)
    with fused_masked_attention(False):
        masked_attention(q, k, v, policy, 0.5, torch.nn.Identity(), b)
    masked_attention(q, k, v, policy, 0.5, torch.nn.Identity(), b)  # the switch is restored
    assert calls == [1, 1]


def test_checkpointed_reference_gives_the_same_gradients(monkeypatch):
    """The reference's weights recomputed in the backward give the gradients of keeping them (with dropout too)."""
    (q, k, v, policy, b), leaves = _inputs(n=7)
    for drop in (torch.nn.Identity(), torch.nn.Dropout(0.3).train()):

        def grads(drop=drop):
            torch.manual_seed(5)
            out = reference_masked_attention(q, k, v, policy, 0.5, drop, b)
            return [out, *torch.autograd.grad(out.square().sum(), leaves)]

        recomputed = grads()
        with monkeypatch.context() as patch:
            patch.setattr(attention, "checkpoint", lambda fn, *args, **_: fn(*args))
            kept = grads()
        for a, c in zip(recomputed, kept, strict=True):
            assert torch.allclose(a, c, atol=1e-6) and a.abs().sum() > 0


def _family(name: str) -> torch.nn.Module:
    if name in ("plain", "lvvit"):
        return dynamicvit.sparsify(tiny_vit(name), keep_rate=0.5)
    size = 32 if "patch16" in name else 28
    return dynamicvit.create_model(
        name, keep_rate=0.5, depth=4, embed_dim=64, num_heads=2, num_classes=7, img_size=size
    )


@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "lvvit",
        "vit_small_patch14_reg4_dinov2",
        "eva02_tiny_patch14_224",
        "beit_base_patch16_224",
        "vit_base_patch16_siglip_224",
    ],
)
def test_every_masked_family_trains_through_the_fused_attention(name, monkeypatch):
    """Each family's train-mode blocks after the first stage call the fused function, and a training step's
    loss and gradients match the reference attention's."""
    model = _family(name).train()
    x = torch.randn(2, 3, *model.patch_embed.img_size)
    calls, apply = [], FusedMaskedAttention.apply
    monkeypatch.setattr(FusedMaskedAttention, "apply", lambda *a: calls.append(1) or apply(*a))

    def step() -> list[torch.Tensor]:
        torch.manual_seed(3)  # the same Gumbel noise
        model.zero_grad()
        loss = model(x, return_decisions=True).logits.square().mean()
        loss.backward()
        return [loss] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    fused = step()
    assert calls, f"{name}: no block used the fused masked attention"
    with fused_masked_attention(False):
        ref = step()
    for a, r in zip(fused, ref, strict=True):
        assert torch.allclose(a, r, rtol=1e-4, atol=1e-6)
