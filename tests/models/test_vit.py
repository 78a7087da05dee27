import copy
from contextlib import nullcontext

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import tiny_vit
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dynamicvit
from dynamicvit.core.predictor import default_prune_layers
from dynamicvit.weights.checkpoint import freeze_weights


def _masks_from_indices(decisions, num_patches):
    return [torch.zeros(d.shape[0], num_patches).scatter(1, d, 1.0) for d in decisions]


@pytest.mark.parametrize(
    "kind,overrides,batch",
    [
        ("plain", {}, 3),
        ("plain", {}, 1),
        ("distilled", {}, 2),
        ("registers", {}, 2),
        ("lvvit", {}, 2),
        ("plain", {"img_size": (24, 40), "patch_size": 8, "qkv_bias": False}, 2),
        ("plain", {"init_values": 0.1, "qk_norm": True, "depth": 6}, 2),
        ("plain", {"class_token": False, "global_pool": "avg"}, 2),  # gap ViTs: average of the kept tokens
        ("plain", {"global_pool": "avg", "fc_norm": True}, 2),
        ("plain", {"class_token": False, "global_pool": "max"}, 1),
        ("plain", {"class_token": False, "global_pool": "map"}, 2),  # SigLIP: attention pooling over kept tokens
        ("registers", {"class_token": False, "global_pool": "avg", "reg_tokens": 4}, 2),
    ],
)
def test_train_masks_equal_eval_gather(kind, overrides, batch):
    """The central contract: same weights, same kept tokens → same logits in both modes."""
    model = dynamicvit.sparsify(tiny_vit(kind, **overrides), keep_rate=0.6)
    x = torch.randn(batch, 3, *model.patch_embed.img_size)
    model.eval()
    with torch.no_grad():
        pruned = model.forward_with_decisions(x)
        model.train()
        for m in model.modules():  # LV-ViT's stem: batch statistics are not what the contract is about
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        masks = _masks_from_indices(pruned.decisions, model.patch_embed.num_patches)
        masked = model.forward_with_decisions(x, decisions=masks)
    assert torch.allclose(masked.logits, pruned.logits, atol=1e-4)
    other = [torch.ones_like(masks[0])] + [1 - m for m in masks[1:]]  # a different kept set
    with torch.no_grad():
        assert not torch.allclose(model(x, decisions=other), pruned.logits, atol=1e-4)


def test_eval_decisions_follow_schedule_and_nest():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.7).eval()
    out = model.forward_with_decisions(torch.randn(4, 3, 32, 32))
    assert [d.shape for d in out.decisions] == [(4, k) for k in model.keep_counts()] == [(4, 44), (4, 31), (4, 21)]
    for prev, cur in zip([None, *out.decisions], out.decisions, strict=False):
        assert all(len(set(row.tolist())) == len(row) for row in cur)  # no token twice
        assert int(cur.min()) >= 0 and int(cur.max()) < 64
        if prev is not None:
            for p, c in zip(prev, cur, strict=True):
                assert set(c.tolist()) <= set(p.tolist())
    assert out.features.shape == (4, 1 + 21, 32)


def test_eval_keeps_the_best_scored_tokens():
    """Forcing the lowest-scored tokens instead changes the result: the predictor's choice is used."""
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.5, prune_layers=[1]).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_with_decisions(x)
        scores = model.score_predictor[0].keep_score(model.blocks[0](model._embed(x))[:, 1:])
    expected = scores.topk(32, dim=1).indices
    assert torch.equal(out.decisions[0].sort(1).values, expected.sort(1).values)


def test_keep_rate_one_equals_dense_model():
    dense = tiny_vit().eval()
    sparse = dynamicvit.sparsify(copy.deepcopy(dense), keep_rate=1.0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sparse(x), dense(x), atol=1e-5)


def test_prefix_tokens_are_always_kept_and_never_scored():
    model = dynamicvit.sparsify(tiny_vit("registers"), keep_rate=0.3).eval()
    out = model.forward_with_decisions(torch.randn(2, 3, 32, 32))
    assert out.features.shape[1] == model.num_prefix_tokens + model.keep_counts()[-1]
    assert all(int(d.max()) < 64 for d in out.decisions)  # indices are into the patch grid only


def test_train_mode_masks_nested_and_trainable():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.7).train()
    out = model.forward_with_decisions(torch.randn(3, 3, 32, 32))
    assert [m.shape for m in out.decisions] == [(3, 64)] * 3
    for prev, cur in zip(out.decisions, out.decisions[1:], strict=False):
        assert bool((cur <= prev).all())
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2])).backward()  # the masks reach the loss only via attention
    for predictor in model.score_predictor:
        assert all(p.grad is not None for p in predictor.parameters())
        assert predictor.out_conv[4].weight.grad.abs().sum() > 0


def test_bf16_autocast_training_forward_is_finite():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.7).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_with_decisions(torch.randn(2, 3, 32, 32) * 50)
    assert torch.isfinite(out.logits.float()).all()
    out.logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_autocast_eval_is_finite(dtype):
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.7).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out = model.forward_with_decisions(x)
    assert torch.isfinite(out.logits.float()).all()
    assert [d.shape for d in out.decisions] == [d.shape for d in model.forward_with_decisions(x).decisions]


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 3),
    grid=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    keep_rate=st.floats(0.05, 1.0),
)
def test_any_grid_any_batch(batch, grid, keep_rate):
    model = dynamicvit.sparsify(tiny_vit(dynamic_img_size=True), keep_rate=keep_rate).eval()
    x = torch.randn(batch, 3, grid[0] * 4, grid[1] * 4)
    n = grid[0] * grid[1]
    out = model.forward_with_decisions(x)
    assert out.logits.shape == (batch, 10)
    assert [d.shape[1] for d in out.decisions] == dynamicvit.keep_counts(n, keep_rate, 3)


def test_default_prune_layers():
    assert default_prune_layers(12) == [3, 6, 9]
    assert default_prune_layers(16) == [4, 8, 12]
    assert default_prune_layers(20) == [5, 10, 15]
    assert dynamicvit.sparsify(tiny_vit()).prune_layers == [1, 2, 3]


def test_state_dict_uses_release_key_layout():
    keys = set(dynamicvit.sparsify(tiny_vit()).state_dict())
    for i in range(3):
        for sub in ("in_conv.0", "in_conv.1", "out_conv.0", "out_conv.2", "out_conv.4"):
            assert f"score_predictor.{i}.{sub}.weight" in keys
    assert "blocks.0.attn.qkv.weight" in keys and "cls_token" in keys


@pytest.mark.promise(
    "bad input",
    "`keep_rate=0`, prune layers out of range or unsorted (API) → `keep_rate must be in (0, 1], got 0.0`, "
    "`prune_layers must lie in [1, 3] for a 4-block model, got [0, 2]`",
)
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"keep_rate": 0.0}, r"^keep_rate must be in \(0, 1\], got 0\.0$"),
        ({"keep_rate": 1.5}, "keep_rate"),
        ({"prune_layers": [0, 2]}, r"^prune_layers must lie in \[1, 3\] for a 4-block model, got \[0, 2\]$"),
        ({"prune_layers": [1, 4]}, r"\[1, 3\]"),
        ({"prune_layers": [2, 1]}, "increasing"),
        ({"prune_layers": []}, "at least one"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dynamicvit.sparsify(tiny_vit(), **kwargs)


@pytest.mark.promise(
    "bad input",
    "wrong input size, channels, shape; NaN/Inf pixels → `input is 64x64 but the model was built for 32x32; …`, "
    "`model expects 3 input channels, got 1`, `input contains NaN or Inf values`",
)
def test_bad_inputs_get_clear_errors():
    model = dynamicvit.sparsify(tiny_vit()).eval()
    with pytest.raises(ValueError, match="^input is 64x64 but the model was built for 32x32"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="^model expects 3 input channels, got 1$"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(3, 32, 32))
    x = torch.randn(1, 3, 32, 32)
    x[0, 0, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="^input contains NaN or Inf values"):
        model(x)
    x[0, 0, 5, 5] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.train()(x)  # also through the masked training path
    model.eval()
    dyn = dynamicvit.sparsify(tiny_vit(dynamic_img_size=True)).eval()
    with pytest.raises(ValueError, match="divisible"):
        dyn(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="keep_rate"):
        model.keep_rate = 0


@pytest.mark.promise(
    "bad input",
    "a ViT head the family cannot follow → `cannot sparsify VisionTransformer: global_pool 'token' "
    "without a class token. Supported: …`",
)
def test_unsupported_models_are_named():
    with pytest.raises(TypeError, match="(?i)supported:"):
        dynamicvit.sparsify(nn.Linear(3, 3))
    no_class_token = tiny_vit(class_token=False, global_pool="avg")
    no_class_token.global_pool = "token"  # timm refuses to build it; a model edited after construction
    with pytest.raises(TypeError, match="global_pool 'token' without a class token"):
        dynamicvit.sparsify(no_class_token)
    with pytest.raises(TypeError, match="patch dropout"):
        dynamicvit.sparsify(tiny_vit(patch_drop_rate=0.1))
    with pytest.raises(ValueError, match="already reduced"):
        dynamicvit.sparsify(dynamicvit.sparsify(tiny_vit()))
    with pytest.raises(ValueError, match="unknown model"):
        dynamicvit.create_model("no_such_model")


def test_create_model_by_timm_name():
    model = dynamicvit.create_model("deit_tiny_patch16_224", keep_rate=0.8, img_size=64, num_classes=5)
    assert model.prune_layers == [3, 6, 9] and model.keep_counts() == [12, 10, 8]
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 5)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("vit_small_patch14_dinov2", {"img_size": 56}),  # layer scale, class token
        ("vit_small_patch14_dinov2", {}),  # at its native 518x518: 37x37 patches
        ("vit_small_patch14_reg4_dinov2", {"img_size": 42}),  # + 4 registers, another resolution
        ("vit_base_patch16_siglip_224", {"img_size": 48}),  # no class token, attention pooling ('map')
        ("vit_base_patch16_gap_224", {"img_size": 48}),  # no class token, average pooling
        ("eva02_tiny_patch14_224", {"img_size": 56}),  # EVA-02: rotary embeddings, SwiGLU, class token + avg pool
        ("eva02_small_patch14_224", {"img_size": 70, "dynamic_img_size": True}),  # rotary table of another grid
        ("eva_giant_patch14_224", {"img_size": 42}),  # EVA: absolute position embeddings, no rotary
        ("beit_base_patch16_224", {"img_size": 48}),  # BEiT: relative position bias per block, avg pool
        ("beitv2_base_patch16_224", {"img_size": 64, "use_shared_rel_pos_bias": True}),  # one shared bias
    ],
)
def test_todays_timm_families_keep_the_contract(name, kwargs):
    """timm's own configurations (shrunk: 4 blocks, 64 wide): created by name, same kept set → same logits."""
    model = dynamicvit.create_model(name, keep_rate=0.6, depth=4, embed_dim=64, num_heads=2, num_classes=7, **kwargs)
    torch.nn.init.normal_(model.head.weight)  # timm scales some heads down at init: make the logits O(1)
    for name_, p in model.named_parameters():  # DINOv2's layer scale starts at 1e-5: let the blocks matter
        if name_.endswith(("ls1.gamma", "ls2.gamma")):
            torch.nn.init.ones_(p)
    x = torch.randn(2, 3, *model.patch_embed.img_size)
    with torch.no_grad():
        pruned = model.eval().forward_with_decisions(x)
        masks = _masks_from_indices(pruned.decisions, model.patch_embed.num_patches)
        masked = model.train().forward_with_decisions(x, decisions=masks)
        other = [torch.ones_like(masks[0])] + [1 - m for m in masks[1:]]  # another kept set
        assert not torch.allclose(model(x, decisions=other), pruned.logits, atol=1e-3)
    assert torch.allclose(masked.logits, pruned.logits, atol=1e-4)
    assert [d.shape[1] for d in pruned.decisions] == model.keep_counts()
    flops = dynamicvit.count_flops(model)
    dense = dynamicvit.count_flops(timm.create_model(name, depth=4, embed_dim=64, num_heads=2, num_classes=7, **kwargs))
    assert flops.total < dense.total
    model.train()(x).sum().backward()  # the predictors learn through the masked attention
    assert model.score_predictor[0].out_conv[0].weight.grad.abs().sum() > 0
    refused = "a per-image keep mode needs a class-token head|no threshold keep mode"
    with pytest.raises(TypeError, match=refused) if "dinov2" not in name else nullcontext():
        model.eval().keep_mode = "threshold"
        model(x)


def test_pooled_head_survives_a_train_mask_that_keeps_nothing():
    model = dynamicvit.sparsify(tiny_vit(class_token=False, global_pool="avg"), keep_rate=0.5).train()
    masks = [torch.ones(2, 64), torch.ones(2, 64), torch.zeros(2, 64).requires_grad_()]  # the last stage keeps none
    out = model(torch.randn(2, 3, 32, 32), decisions=masks)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(masks[2].grad).all()


def _patch_embed_calls(model) -> list:
    calls = []
    model.patch_embed.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("kind", ["plain", "distilled", "registers", "lvvit"])
def test_teacher_resumes_from_the_frozen_students_tokens_before_the_first_stage(kind):
    teacher = tiny_vit(kind).eval()
    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()
    student.freeze_prefix()  # LV-ViT's stem has batch norms: they stay in eval mode
    calls = _patch_embed_calls(teacher)
    x = torch.randn(3, 3, 32, 32)
    student.forward_restored(x)  # token restoration (a segmenter's backbone) shares the same way
    with torch.no_grad():
        assert torch.equal(student.teacher_features(teacher, x), teacher.forward_features(x.clone()))
        assert len(calls) == 1  # only the comparison ran the teacher's embedding
    calls.clear()
    student(x, return_decisions=True)
    with torch.no_grad():
        shared = student.teacher_features(teacher, x)
        assert not calls  # the teacher's embedding and first block did not run
        assert torch.equal(shared, teacher.forward_features(x))


def test_teacher_runs_whole_unless_the_prefix_is_frozen_deterministic_and_equal():
    teacher = tiny_vit().eval()
    x = torch.randn(2, 3, 32, 32)

    def shares(student, images=x) -> bool:
        calls = _patch_embed_calls(teacher)
        student(x, return_decisions=True)
        with torch.no_grad():
            out = student.teacher_features(teacher, images)
            resumed = not calls
            assert torch.equal(out, teacher.forward_features(images))
        teacher.patch_embed._forward_hooks.clear()
        return resumed

    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()
    assert not shares(student)  # the prefix is trainable: its weights may differ by the next step
    freeze_weights(student)
    assert shares(student)
    assert not shares(student, x[:1])  # not the batch the student saw
    weight = teacher.blocks[0].mlp.fc1.weight
    before = weight.detach().clone()
    with torch.no_grad():
        weight[0, 0] += 1
    assert not shares(student)  # weights differ
    with torch.no_grad():
        weight.copy_(before)
    assert shares(student)  # equal again (rechecked: the weight's version changed)
    for noise in ({"pos_drop_rate": 0.3}, {"proj_drop_rate": 0.3}, {"drop_path_rate": 0.5}):
        noisy = dynamicvit.sparsify(tiny_vit(**noise), keep_rate=0.7, prune_layers=[2, 3]).train()
        noisy.load_state_dict(teacher.state_dict(), strict=False)
        freeze_weights(noisy)
        assert not shares(noisy)  # dropout in the prefix: the student's tokens are not the teacher's


def test_a_frozen_prefix_keeps_its_batch_norms_in_eval_mode_and_is_shared():
    teacher = timm.create_model("dvit_tiny_fmnist", img_size=32, depth=4).eval()  # convolutional stem with BN
    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()
    freeze_weights(student)
    norms = [m for m in student.patch_embed.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.randn(2, 1, 32, 32)
    student(x, return_decisions=True)
    assert student._shared is None  # batch statistics in the stem: not the teacher's tokens
    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()  # stats as the teacher's
    norms = [m for m in student.patch_embed.modules() if isinstance(m, nn.BatchNorm2d)]
    student.freeze_prefix()
    student.train()
    assert norms and not any(m.training for m in norms) and student.blocks[0].training
    stats = [m.running_mean.clone() for m in norms]
    calls = _patch_embed_calls(teacher)
    student(x, return_decisions=True)
    with torch.no_grad():
        shared = student.teacher_features(teacher, x)
    assert not calls and torch.equal(shared, teacher.forward_features(x))
    assert all(torch.equal(m.running_mean, s) for m, s in zip(norms, stats, strict=True))
