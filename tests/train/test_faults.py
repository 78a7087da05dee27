"""Kill-and-resume: a training process killed with SIGKILL mid-epoch or while writing a checkpoint,
then resumed, ends with the same weights as an uninterrupted run; no half-written file is read."""

import json
import os
import signal
import subprocess
import sys
import time

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


def _command(out, data_dir, teacher, resume=False, epochs=3) -> list[str]:
    args = ["--model", "vit_tiny_patch16_224", "--model-kwargs", str(TINY_KW).replace("'", '"')]
    args += ["--data", "fashion-mnist", "--data-dir", str(data_dir), "--img-size", "28", "--train-limit", "64"]
    args += ["--val-limit", "16", "--batch-size", "16", "--epochs", str(epochs), "--warmup-epochs", "0.5"]
    args += ["--lr", "1e-3"]
    args += ["--teacher-checkpoint", str(teacher), "--freeze-backbone-epochs", "1", "--ema-decay", "0.9"]
    args += ["--no-progress", "--deterministic", "--out", str(out)] + (["--resume"] if resume else [])
    return [sys.executable, "-m", "dynamicvit", "train", *args]


def _train(out, data_dir, teacher, fault=None, resume=False) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DYNAMICVIT_FAULT"}
    if fault:
        env["DYNAMICVIT_FAULT"] = fault
    cmd = _command(out, data_dir, teacher, resume)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300).returncode


def _state(path):
    state = torch.load(path, weights_only=True)
    return {**{f"model.{k}": v for k, v in state["model"].items()}, **{f"ema.{k}": v for k, v in state["ema"].items()}}


@pytest.mark.parametrize("fault", ["update:6", "save:2"])  # mid-epoch 2 (4 updates an epoch); the 2nd checkpoint
@pytest.mark.promise(
    "killed runs",
    "a training run killed mid-epoch or while writing its checkpoint resumes to the uninterrupted run's "
    "weights; no half-written file is read",
)
def test_killed_run_resumes_to_the_same_weights(tmp_path, fake_fashion, teacher, uninterrupted, fault):
    assert _train(tmp_path / "killed", fake_fashion, teacher, fault=fault) == -signal.SIGKILL
    left = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)  # the last complete checkpoint
    assert left["epoch"] == 1
    assert (tmp_path / "killed" / ".dynamicvit.lock").exists()  # the killed run's lock, taken over on resume
    if fault.startswith("save"):
        assert list((tmp_path / "killed").glob(".dynamicvit-*-last.pth"))  # the interrupted write, never read
    assert _train(tmp_path / "killed", fake_fashion, teacher, resume=True) == 0
    assert not list((tmp_path / "killed").glob(".dynamicvit-*"))  # temporaries removed, the lock released
    a, b = _state(uninterrupted), _state(tmp_path / "killed" / "last.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]  # each epoch logged once


@pytest.mark.promise(
    "killed runs",
    "a second run into a folder another run holds exits 2 naming the holder; the first finishes untouched",
)
def test_a_second_run_into_a_held_folder_exits_2_and_the_first_finishes(tmp_path, fake_fashion, teacher):
    out = tmp_path / "shared"
    out.mkdir()
    (out / ".notes.tmp").write_text("a colleague's file")
    long_run = _command(out, fake_fashion, teacher, epochs=40)  # still training when the second one starts
    first = subprocess.Popen(long_run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # the first process holds the folder from its start
            if (out / ".dynamicvit.lock").exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        second = subprocess.run(_command(out, fake_fashion, teacher), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert second.stderr.startswith(f"dynamicvit train: error: --out {out} is in use by process {first.pid} on ")
        assert second.stderr.count("\n") == 1
    finally:
        assert first.wait(timeout=300) == 0
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 40
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 40  # only the first run's epochs
    assert (out / ".notes.tmp").read_text() == "a colleague's file" and not (out / ".dynamicvit.lock").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1.6 MB tmpfs at ``tmp_path/disk``: room for the first epoch's checkpoint of the tiny run (0.6 MB), not
    for writing the second (1.1 MB) beside it. Mounting needs root; elsewhere the test is skipped, saying so."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(disk)]).returncode:
        pytest.skip("a filesystem that really fills needs root to mount a tmpfs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.promise(
    "a full disk",
    "a training run that fills its disk (a real tmpfs) stops in one line and keeps its last checkpoint; "
    "after space is freed, `--resume` ends with the uninterrupted run's weights and each epoch logged "
    "once",
)
def test_a_full_disk_keeps_the_last_checkpoint_and_resume_finishes_the_same(
    small_disk, fake_fashion, teacher, uninterrupted
):
    out = small_disk / "run"
    run = subprocess.run(_command(out, fake_fashion, teacher), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.startswith(f"dynamicvit train: error: cannot write {out / 'last.pth'}: no space left on the")
    assert run.stderr.count("\n") == 1 and " free there)" in run.stderr
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1  # the last good checkpoint, untouched
    assert not list(out.glob(".dynamicvit-*-last.pth"))  # no temporary left taking the space
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)  # space freed
    assert _train(out, fake_fashion, teacher, resume=True) == 0
    a, b = _state(uninterrupted), _state(out / "last.pth")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
