"""Training at scale: gradient accumulation, sharded evaluation, each rank on its own GPU (mocked), data in
shards and Hugging Face datasets with 2 gloo processes, resuming with another number of processes, and a
failed rank ending the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
from conftest import make_hf, make_shards, tiny_cfg

from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train import distributed
from dynamicvit.train.distributed import combine_results, eval_shard
from dynamicvit.train.trainer import Trainer

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dynamicvit"]
RGB_ARGS = [
    "train",
    "--dense",
    "--model",
    "vit_tiny_patch16_224",
    "--model-kwargs",
    '{"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}',
    "--img-size",
    "16",
    "--batch-size",
    "4",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
    "--no-progress",
    "--deterministic",
]


def _run(cmd, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def _ok(out: subprocess.CompletedProcess) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{") :])


def _metrics(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_accumulated_gradients_equal_the_larger_batch(tmp_path, fake_fashion):
    """--accum-steps 2 at batch 8: the summed gradients of two halves (each loss divided by 2) equal batch 16's."""
    from dynamicvit.data import build_dataset
    from dynamicvit.train.trainer import _Meter

    grads = {}
    data = build_dataset("fashion-mnist", "train", data_dir=fake_fashion, img_size=28, limit=16)
    x, y = next(iter(torch.utils.data.DataLoader(data, 16)))
    for name, accum, halves in (("big", 1, [slice(0, 16)]), ("accum", 2, [slice(0, 8), slice(8, 16)])):
        with Trainer(tiny_cfg(tmp_path, fake_fashion, name, dense=True, accum_steps=accum)) as trainer:
            for i, part in enumerate(halves):
                assert trainer._accumulate(x[part], y[part], i == len(halves) - 1, _Meter(1))
            grads[name] = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
    assert max((grads["big"][n] - grads["accum"][n]).abs().max().item() for n in grads["big"]) < 1e-6


def test_an_accumulated_epoch_follows_the_larger_batch(tmp_path, fake_fashion):
    """The epoch's loop: one optimiser step per group of 2 batches, gradients zeroed between groups, the
    schedule counting optimiser steps. (AdamW's normalisation turns 1e-7 gradient rounding into ~1e-6.)"""
    runs = {}
    for name, batch, accum in (("big", 16, 1), ("accum", 8, 2)):
        cfg = tiny_cfg(tmp_path, fake_fashion, name, dense=True, epochs=1, batch_size=batch, accum_steps=accum)
        with Trainer(cfg) as trainer:
            trainer.fit()
            runs[name] = (trainer.updates, {k: v.clone() for k, v in trainer.model.state_dict().items()})
    (big_updates, big), (updates, accumulated) = runs["big"], runs["accum"]
    assert big_updates == updates == 4  # 64 images / 16 per optimiser step
    assert max((big[k] - accumulated[k]).abs().max().item() for k in big) < 2e-5  # one step moves ~1e-3


def test_sharded_evaluation_equals_one_pass(fake_fashion):
    """17 images on 2 ranks (9 + 8): every image once, top-1 and loss as one pass computes them."""
    from dynamicvit.data import build_dataset
    from dynamicvit.models.registry import build_timm_model

    data = build_dataset("fashion-mnist", "test", data_dir=fake_fashion, img_size=28, limit=17)
    model = build_timm_model(
        "vit_tiny_patch16_224",
        img_size=28,
        in_chans=1,
        num_classes=10,
        patch_size=7,
        embed_dim=32,
        depth=2,
        num_heads=2,
    ).eval()
    whole = evaluate(model, data)
    parts = [evaluate(model, eval_shard(data, r, 2)) for r in (0, 1)]
    assert [p["images"] for p in parts] == [9, 8]
    combined = combine_results(parts)
    assert combined["images"] == 17 and combined["top1"] == pytest.approx(whole["top1"], abs=1e-9)
    assert combined["loss"] == pytest.approx(whole["loss"], rel=1e-6)


def test_each_rank_uses_its_own_gpu(monkeypatch):
    """A fake 2-GPU node, rank 1: the GPU is selected before the NCCL group exists, the group is bound to it,
    and the collectives' tensors and the saved random state are that GPU's."""
    calls: list = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda d: calls.append(("rng", torch.device(d))) or torch.zeros(1))
    monkeypatch.setattr(dist, "is_initialized", lambda: any(c[0] == "init" for c in calls))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(("init", backend, kw)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(dist, "all_gather", lambda out, t: calls.append(("all_gather", t.device)) or out)
    moved = []
    real_to = torch.Tensor.to
    monkeypatch.setattr(
        torch.Tensor, "to", lambda t, d, *a, **k: moved.append(torch.device(d)) or real_to(t, "cpu", *a, **k)
    )

    assert distributed.dist_info() == (1, 2, 1)
    gpu1 = torch.device("cuda", 1)
    assert calls[0] == ("set_device", gpu1) and calls[1] == ("init", "nccl", {"device_id": gpu1})
    distributed.ranks_in_sync(torch.nn.Linear(2, 2))
    assert moved == [gpu1]
    distributed.rng_state()
    assert calls[-1] == ("rng", gpu1)


def test_two_processes_train_on_webdataset_shards(tmp_path):
    data = make_shards(tmp_path / "wds", {"train": [8, 8, 8, 8], "val": [5, 4]})
    record = _ok(
        _run([*TORCHRUN, *RGB_ARGS, "--data", "wds", "--data-dir", str(data), "--out", str(tmp_path / "run")], tmp_path)
    )
    assert record["ranks_in_sync"] is True and record["val_images"] == 9 and record["skipped_records"] == 0
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["updates"] == 4  # 32 images / (4 x 2)


def test_two_processes_on_a_saved_hf_dataset_evaluate_like_one(tmp_path):
    """Trained by 2 gloo processes on a saved DatasetDict; the validation they share out (9 images, 5 + 4)
    gives the top-1 that one process finds evaluating the checkpoint."""
    data = make_hf(tmp_path / "hf")
    out = tmp_path / "run"
    record = _ok(_run([*TORCHRUN, *RGB_ARGS, "--data", "hfds", "--data-dir", str(data), "--out", str(out)], tmp_path))
    assert record["ranks_in_sync"] is True and record["val_images"] == 9
    single = _run(
        [sys.executable, "-m", "dynamicvit", "eval", "--checkpoint", str(out / "last.pth"), "--json"], tmp_path
    )
    assert single.returncode == 0, single.stderr[-2000:]
    alone = json.loads(single.stdout[single.stdout.index("{") :])
    assert alone["images"] == 9 and alone["top1"] == pytest.approx(_metrics(out)[-1]["val_top1"], abs=1e-9)


def test_a_two_process_run_resumes_with_one(tmp_path, fake_fashion):
    args = ["train", "--dense", "--model", "vit_tiny_patch16_224", "--data", "fashion-mnist"]
    args += ["--model-kwargs", '{"patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 2}', "--img-size", "28"]
    args += ["--data-dir", str(fake_fashion), "--train-limit", "64", "--val-limit", "16", "--batch-size", "8"]
    args += ["--warmup-epochs", "0", "--no-progress", "--out", str(tmp_path / "run")]
    _ok(_run([*TORCHRUN, *args, "--epochs", "1"], tmp_path))
    resumed = _run([sys.executable, "-m", "dynamicvit", *args, "--epochs", "2", "--resume"], tmp_path)
    _ok(resumed)
    assert "resuming a run of 2 processes with 1: global batch 16 -> 8, updates per epoch 4 -> 8" in resumed.stdout
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert state["epoch"] == 2 and state["updates"] == 16 and len(state["rng_ranks"]) == 1


def test_a_failed_rank_ends_every_rank(tmp_path, fake_fashion):
    """Rank 1 dies at its second update while rank 0 goes on into the next collective: the job ends at once
    with an error, long before gloo's 30-minute timeout."""
    args = ["train", "--dense", "--model", "vit_tiny_patch16_224", "--data", "fashion-mnist", "--epochs", "3"]
    args += ["--model-kwargs", '{"patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 2}', "--img-size", "28"]
    args += ["--data-dir", str(fake_fashion), "--train-limit", "64", "--batch-size", "8", "--no-progress"]
    env = {**os.environ, "DYNAMICVIT_FAULT": "update:2:1"}
    start = time.monotonic()
    out = _run([*TORCHRUN, *args, "--out", str(tmp_path / "run")], tmp_path, env=env, timeout=240)
    assert out.returncode != 0 and time.monotonic() - start < 120


@pytest.mark.cuda
def test_training_on_the_gpu_with_amp_channels_last_and_compile(tmp_path, fake_fashion):
    cfg = tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, amp=True, channels_last=True, compile=True)
    with Trainer(cfg) as trainer:
        record = trainer.fit()
        assert next(trainer.model.parameters()).is_cuda and trainer.scaler is not None
    assert record["val_top1"] is not None and record["skipped_steps"] == 0
