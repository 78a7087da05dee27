"""Kill-and-resume: a training process killed with SIGKILL mid-epoch or while writing a checkpoint,
then resumed, ends with the same weights as an uninterrupted run; no half-written file is read."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import TINY_KW, tiny_cfg

from dynamicvit.train.trainer import Trainer


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, fake_fashion):
    tmp = tmp_path_factory.mktemp("fault_teacher")
    Trainer(tiny_cfg(tmp, fake_fashion, dense=True, epochs=1)).fit()
    return tmp / "run" / "last.pth"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fake_fashion, teacher):
    out = tmp_path_factory.mktemp("fault_full") / "full"
    assert _train(out, fake_fashion, teacher) == 0
    return out / "last.pth"


def _train(out, data_dir, teacher, fault=None, resume=False) -> int:
    args = ["--model", "vit_tiny_patch16_224", "--model-kwargs", str(TINY_KW).replace("'", '"')]
    args += ["--data", "fashion-mnist", "--data-dir", str(data_dir), "--img-size", "28", "--train-limit", "64"]
    args += ["--val-limit", "16", "--batch-size", "16", "--epochs", "3", "--warmup-epochs", "0.5", "--lr", "1e-3"]
    args += ["--teacher-checkpoint", str(teacher), "--freeze-backbone-epochs", "1", "--ema-decay", "0.9"]
    args += ["--no-progress", "--deterministic", "--out", str(out)] + (["--resume"] if resume else [])
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICVIT_FAULT"}
    if fault:
        env["DYNAMICVIT_FAULT"] = fault
    cmd = [sys.executable, "-m", "dynamicvit", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300).returncode


def _state(path):
    state = torch.load(path, weights_only=True)
    return {**{f"model.{k}": v for k, v in state["model"].items()}, **{f"ema.{k}": v for k, v in state["ema"].items()}}


@pytest.mark.parametrize("fault", ["update:6", "save:2"])  # mid-epoch 2 (4 updates an epoch); the 2nd checkpoint
def test_killed_run_resumes_to_the_same_weights(tmp_path, fake_fashion, teacher, uninterrupted, fault):
    assert _train(tmp_path / "killed", fake_fashion, teacher, fault=fault) == -signal.SIGKILL
    left = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)  # the last complete checkpoint
    assert left["epoch"] == 1
    if fault.startswith("save"):
        assert list((tmp_path / "killed").glob(".last.pth.*.tmp"))  # the interrupted write, never read
    assert _train(tmp_path / "killed", fake_fashion, teacher, resume=True) == 0
    assert not list((tmp_path / "killed").glob("*.tmp")) and not list((tmp_path / "killed").glob(".*.tmp"))
    a, b = _state(uninterrupted), _state(tmp_path / "killed" / "last.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # each epoch logged once
