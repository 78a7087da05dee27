import copy

import pytest
import torch
from conftest import tiny_vit
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import Method
from dynamicvit.export import export_onnx
from dynamicvit.methods import METHODS, apply_method, method_of, set_budget
from dynamicvit.methods.budget import macs_fraction
from dynamicvit.methods.common import ScoredKeepMixin, reduce_vit
from dynamicvit.methods.tome import bipartite_merge

BASELINES = [m for m in METHODS if m != "dynamicvit"]


def _reduced(method, kind="plain", **kwargs):
    return apply_method(tiny_vit(kind), method, **kwargs).eval()


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("kind", ["plain", "distilled", "registers"])
def test_forward_shapes_and_counts(method, kind):
    model = _reduced(method, kind, keep_rate=0.6, r=5)
    x = torch.randn(2, 3, 32, 32)
    out = model.forward_with_decisions(x)
    assert out.logits.shape == (2, 10)
    counts = model.token_counts()
    assert out.features.shape[1] == model.num_prefix_tokens + counts[-1]
    for d, k in zip(out.decisions, model.keep_counts(), strict=False):
        assert d.shape == (2, k) and d.min() >= 0 and d.max() < 64
    assert count_flops(model).tokens == {"input": 64, **{f"stage {s + 1}": c for s, c in enumerate(counts)}}


@pytest.mark.parametrize("method", BASELINES)
def test_trains_and_agrees_with_eval(method):
    """No masks: train mode computes what eval computes (dropout off), and gradients flow."""
    model = _reduced(method, keep_rate=0.6, r=5)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        evaluated = model(x)
    model.train()
    if method == "random":
        model._generator.manual_seed(0)
        evaluated = model(x).detach()
        model._generator.manual_seed(0)
    logits = model(x)
    assert torch.allclose(logits, evaluated, atol=1e-5)
    logits.sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "method,kwargs", [("pool", {"keep_rate": 1.0}), ("tome", {"r": 0}), ("evit", {"keep_rate": 1.0, "fuse": False})]
)
def test_no_reduction_equals_dense(method, kwargs):
    dense = tiny_vit().eval()
    model = apply_method(copy.deepcopy(dense), method, **kwargs).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), dense(x), atol=1e-5)


def test_static_keeps_the_centre_for_every_image():
    model = _reduced("static", keep_rate=0.25, prune_layers=[1])  # 64 patches → 16 kept
    kept = model.forward_with_decisions(torch.randn(3, 3, 32, 32)).decisions[0]
    centre = {r * 8 + c for r in range(2, 6) for c in range(2, 6)}
    assert all(set(row.tolist()) == centre for row in kept)


def test_random_is_random_but_seeded():
    x = torch.randn(4, 3, 32, 32)
    a = _reduced("random", seed=1).forward_with_decisions(x).decisions
    b = _reduced("random", seed=1).forward_with_decisions(x).decisions
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    first = a[0]
    assert not all(torch.equal(set_row, first[0]) for set_row in first[1:])
    for earlier, later in zip(a, a[1:], strict=False):  # nested
        assert all(set(lo.tolist()) <= set(hi.tolist()) for hi, lo in zip(earlier, later, strict=True))


def test_pool_halves_the_grid():
    model = _reduced("pool", keep_rate=0.25, prune_layers=[1, 2])  # side × 0.5 per stage: 8 → 4 → 2
    assert model.token_counts() == [16, 4]
    assert model.forward_with_decisions(torch.randn(1, 3, 32, 32)).features.shape[1] == 1 + 4


def test_evit_keeps_what_the_class_token_attends_to():
    dense = tiny_vit().eval()
    model = apply_method(copy.deepcopy(dense), "evit", keep_rate=0.5, prune_layers=[1], fuse=False).eval()
    x = torch.randn(2, 3, 32, 32)
    captured = {}

    def hook(module, args, out):
        q, k, _ = out.reshape(2, 65, 3, 2, 16).permute(2, 0, 3, 1, 4)
        captured["cls"] = ((q * module_scale) @ k.transpose(-2, -1)).softmax(-1)[:, :, 0, 1:].mean(1)

    module_scale = dense.blocks[1].attn.scale
    handle = dense.blocks[1].attn.qkv.register_forward_hook(hook)
    with torch.no_grad():
        dense(x)
        kept = model.forward_with_decisions(x).decisions[0]
    handle.remove()
    expected = captured["cls"].topk(32, dim=1).indices
    assert all(set(a.tolist()) == set(b.tolist()) for a, b in zip(kept, expected, strict=True))
    fused = apply_method(copy.deepcopy(dense), "evit", keep_rate=0.5, prune_layers=[1]).eval()
    assert fused.token_counts() == [33]  # 32 kept + the fused token


def test_tome_merge_conserves_mass_and_size():
    x, size = torch.randn(2, 11, 4), torch.rand(2, 11, 1) + 0.5
    merged, msize = bipartite_merge(x, size, torch.randn(2, 11, 3), r=3, prefix=1)
    assert merged.shape == (2, 8, 4) and msize.shape == (2, 8, 1)
    assert torch.allclose((merged * msize).sum(1), (x * size).sum(1), atol=1e-5)
    assert torch.allclose(msize.sum(1), size.sum(1))
    assert torch.equal(merged[:, 0], x[:, 0])  # the class token never merges


def test_tome_token_counts_follow_r():
    model = _reduced("tome", r=20)
    assert model.token_counts() == [44, 24, 12, 6]  # r capped at half of what is left
    assert model.forward_with_decisions(torch.randn(1, 3, 32, 32)).features.shape[1] == 7


@pytest.mark.parametrize("method", METHODS)
def test_set_budget_matches_macs(method):
    dense = tiny_vit().eval()
    dense_macs = count_flops(dense).total
    model = apply_method(copy.deepcopy(dense), method)
    reached = set_budget(model, 0.6, dense_macs)
    assert abs(reached - 0.6) < 0.05
    assert abs(macs_fraction(model, dense_macs) - reached) < 1e-9  # DiffRate's: its search's target
    if method != "diffrate":  # the others' cost is what a forward counts
        assert abs(count_flops(model).total / dense_macs - reached) < 1e-9


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown method"):
        apply_method(tiny_vit(), "magic")
    with pytest.raises(ValueError, match="keep_rate"):
        apply_method(tiny_vit(), "random", keep_rate=1.5)
    with pytest.raises(ValueError, match="already reduced"):
        apply_method(_reduced("tome"), "evit")
    dense_macs = count_flops(tiny_vit()).total
    with pytest.raises(ValueError, match="outside what tome reaches"):
        set_budget(apply_method(tiny_vit(), "tome"), 0.05, dense_macs)
    with pytest.raises(ValueError, match="budget must be"):
        set_budget(apply_method(tiny_vit(), "random"), 1.5, dense_macs)
    with pytest.raises(ValueError, match="forced decisions"):
        _reduced("random")(torch.randn(1, 3, 32, 32), decisions=[torch.zeros(1, 4, dtype=torch.long)] * 3)


@pytest.mark.parametrize("method", ["evit", "tome"])
def test_bf16_autocast_is_finite(method):
    model = _reduced(method, r=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(torch.randn(2, 3, 32, 32)).float()).all()


@settings(max_examples=10, deadline=None)
@given(
    method=st.sampled_from(BASELINES),
    batch=st.integers(1, 3),
    rate=st.floats(0.1, 1.0),
    r=st.integers(0, 40),
)
def test_any_budget_any_batch(method, batch, rate, r):
    model = _reduced(method, keep_rate=rate, r=r)
    out = model.forward_with_decisions(torch.randn(batch, 3, 32, 32))
    assert out.logits.shape == (batch, 10) and torch.isfinite(out.logits).all()
    assert out.features.shape[1] == model.num_prefix_tokens + model.token_counts()[-1]


class _FirstPatchesMixin(ScoredKeepMixin):
    method = "first"

    def stage_scores(self, index, grid):
        return -index.float()  # the lowest grid indices win


class _FirstPatches(Method):
    name, label = "first", "first patches"

    @classmethod
    def apply(cls, model, keep_rate=0.7, prune_layers=None, **_):
        return reduce_vit(model, _FirstPatchesMixin, keep_rate, prune_layers)


@pytest.fixture
def first_patches():
    yield METHODS.register("first", _FirstPatches)  # the registry line
    METHODS.remove("first")


def test_a_new_method_needs_its_classes_and_one_registry_line(first_patches, tmp_path):
    dense = tiny_vit().eval()
    model = apply_method(copy.deepcopy(dense), "first", keep_rate=0.5).eval()
    assert method_of(model) is _FirstPatches and method_of(dense) is None
    out = model.forward_with_decisions(torch.randn(2, 3, 32, 32))
    assert [d[0].tolist() for d in out.decisions] == [list(range(k)) for k in model.keep_counts()]
    assert count_flops(model).tokens == {"input": 64, "stage 1": 32, "stage 2": 16, "stage 3": 8}
    assert abs(set_budget(model, 0.7, count_flops(dense).total) - 0.7) < 0.05
    with pytest.raises(ValueError, match="forced decisions"):
        model(torch.randn(1, 3, 32, 32), decisions=[torch.zeros(1, 4, dtype=torch.long)] * 3)
    assert export_onnx(model, tmp_path / "first.onnx")["max_abs_diff"] < 1e-4


def test_registry_entries_declare_what_the_rest_consults():
    assert METHODS["dynamicvit"].learned and METHODS["dynamicvit"].accepts_decisions
    assert not METHODS["random"].exportable
    assert (METHODS["tome"].knob, METHODS["mctf"].knob) == ("tome_r", "mctf_r")
    assert all(name == entry.name for name, entry in METHODS.items())
