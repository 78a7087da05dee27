import argparse
import copy

import pytest
import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.weights.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
    save_checkpoint,
)


def _sparse():
    return dynamicvit.sparsify(tiny_vit(), keep_rate=0.7).eval()


def test_release_layout_roundtrip(tmp_path):
    src = _sparse()
    torch.save({"model": src.state_dict(), "epoch": 29}, tmp_path / "release.pth")
    dst = _sparse()
    load_checkpoint(dst, tmp_path / "release.pth")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(dst(x), src(x))


def test_save_checkpoint_writes_release_layout(tmp_path):
    model = _sparse()
    save_checkpoint(model, tmp_path / "a" / "ckpt.pth", epoch=3)
    obj = torch.load(tmp_path / "a" / "ckpt.pth", weights_only=True)
    assert obj["epoch"] == 3 and set(obj["model"]) == set(model.state_dict())
    assert not list((tmp_path / "a").glob(".dynamicvit-*"))


def test_ddp_prefix_and_raw_state_dicts_are_accepted():
    model = _sparse()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    assert set(read_state_dict({"state_dict": state})) == set(model.state_dict())


def test_dense_checkpoint_initialises_sparse_backbone(tmp_path):
    dense = tiny_vit().eval()
    torch.save(dense.state_dict(), tmp_path / "dense.pth")
    sparse = _sparse()
    before = copy.deepcopy(sparse.score_predictor.state_dict())
    load_checkpoint(sparse, tmp_path / "dense.pth")
    assert torch.equal(sparse.blocks[0].attn.qkv.weight, dense.blocks[0].attn.qkv.weight)
    assert all(torch.equal(v, sparse.score_predictor.state_dict()[k]) for k, v in before.items())
    sparse.keep_rate = 1.0
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(sparse(x), dense(x), atol=1e-5)


def test_create_model_loads_checkpoint_path(tmp_path):
    src = dynamicvit.create_model("deit_tiny_patch16_224", img_size=32, num_classes=3).eval()
    save_checkpoint(src, tmp_path / "c.pth")
    dst = dynamicvit.create_model(
        "deit_tiny_patch16_224", img_size=32, num_classes=3, checkpoint_path=tmp_path / "c.pth"
    )
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(dst.eval()(x), src(x))


@pytest.mark.promise(
    "bad input",
    "a corrupt, truncated or missing checkpoint → `cannot read checkpoint bad.pth (corrupt or not a "
    "PyTorch file): …`, `no checkpoint file at missing.pth`",
)
def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(
        CheckpointError, match=r"^cannot read checkpoint .*bad\.pth \(corrupt or not a PyTorch file\): "
    ):
        load_checkpoint(_sparse(), path)
    good = tmp_path / "good.pth"
    save_checkpoint(_sparse(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(_sparse(), truncated)
    with pytest.raises(CheckpointError, match=r"^no checkpoint file at .*missing\.pth"):
        load_checkpoint(_sparse(), tmp_path / "missing.pth")


def test_wrong_architecture_names_the_keys(tmp_path):
    other = dynamicvit.sparsify(tiny_vit(depth=6), keep_rate=0.7)
    save_checkpoint(other, tmp_path / "deep.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys: blocks\.4\."):
        load_checkpoint(_sparse(), tmp_path / "deep.pth")


@pytest.mark.promise(
    "bad input",
    "a checkpoint of another architecture → `checkpoint … does not fit … – missing keys: …; "
    "unexpected keys: …; shape mismatch: head.bias (7,) vs model (10,)`",
)
def test_shape_mismatch_names_the_key(tmp_path):
    save_checkpoint(dynamicvit.sparsify(tiny_vit(num_classes=7)), tmp_path / "c7.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch: head\.bias \(7,\) vs model \(10,\)"):
        load_checkpoint(_sparse(), tmp_path / "c7.pth")


def test_partial_predictors_are_reported_missing():
    state = _sparse().state_dict()
    del state["score_predictor.2.out_conv.4.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: score_predictor\.2\.out_conv\.4\.weight"):
        load_checkpoint(_sparse(), {"model": state})


def test_pickled_extras_are_read_without_running_them(tmp_path):
    """The release's checkpoints carry an ``argparse.Namespace`` under ``args``: the tensors load,
    the extra comes back as an inert stand-in holding its fields as data."""
    src = _sparse()
    path = tmp_path / "release.pth"
    torch.save({"model": src.state_dict(), "args": argparse.Namespace(lr=5e-4, model="deit"), "epoch": 29}, path)
    state = read_checkpoint(path)
    assert state["epoch"] == 29 and state["args"].state == {"lr": 5e-4, "model": "deit"}
    dst = _sparse()
    load_checkpoint(dst, path)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True))
