"""torchrun with 2 CPU processes (gloo): ranks end identical and match one process on the same global batch."""

import json
import subprocess
import sys

import torch

ARGS = [
    "train",
    "--model",
    "vit_tiny_patch16_224",
    "--model-kwargs",
    '{"patch_size": 7, "embed_dim": 32, "depth": 4, "num_heads": 2}',
    "--data",
    "fashion-mnist",
    "--img-size",
    "28",
    "--train-limit",
    "64",
    "--val-limit",
    "16",
    "--epochs",
    "1",
    "--warmup-epochs",
    "0",
    "--lr",
    "1e-3",
    "--no-progress",
    "--deterministic",
]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "dynamicvit"]


def _run(cmd, cwd) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{") :])


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_two_processes_match_one_on_the_same_global_batch(tmp_path, fake_fashion):
    data = ["--data-dir", str(fake_fashion)]
    single = _run(
        [
            sys.executable,
            "-m",
            "dynamicvit",
            *ARGS,
            "--dense",
            *data,
            "--batch-size",
            "16",
            "--out",
            str(tmp_path / "single"),
        ],
        tmp_path,
    )
    ddp = _run([*TORCHRUN, *ARGS, "--dense", *data, "--batch-size", "8", "--out", str(tmp_path / "ddp")], tmp_path)
    assert ddp["ranks_in_sync"] is True and "ranks_in_sync" not in single
    a, b = _weights(tmp_path / "ddp" / "last.pth"), _weights(tmp_path / "single" / "last.pth")
    # Each AdamW step moves a weight by ~lr = 1e-3; a different global batch or a missed gradient
    # average shows up at that scale. Reordered float sums leave ~1e-5 differences.
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    init = torch.load(tmp_path / "single" / "last.pth", weights_only=True)
    assert init["updates"] == 4  # 64 images / global batch 16, both runs

    sparse = _run(
        [
            *TORCHRUN,
            *ARGS,
            *data,
            "--batch-size",
            "8",
            "--teacher-checkpoint",
            str(tmp_path / "single" / "last.pth"),
            "--out",
            str(tmp_path / "sparse"),
        ],
        tmp_path,
    )
    assert sparse["ranks_in_sync"] is True and "train_token_mse" in sparse


def test_two_process_resume_equals_uninterrupted(tmp_path, fake_fashion):
    """1 epoch + resume + 1 epoch == 2 epochs bit for bit with 2 gloo processes: every rank's random
    state (Gumbel noise) is saved and restored. A constant learning rate makes the plans equal."""
    teacher = tmp_path / "teacher"
    _run(
        [sys.executable, "-m", "dynamicvit", *ARGS, "--dense", "--data-dir", str(fake_fashion), "--out", str(teacher)],
        tmp_path,
    )
    common = [*ARGS, "--data-dir", str(fake_fashion), "--batch-size", "8", "--min-lr", "1e-3"]
    common += ["--teacher-checkpoint", str(teacher / "last.pth")]
    _run([*TORCHRUN, *common, "--epochs", "2", "--out", str(tmp_path / "full")], tmp_path)
    _run([*TORCHRUN, *common, "--out", str(tmp_path / "split")], tmp_path)  # ARGS: 1 epoch
    _run([*TORCHRUN, *common, "--epochs", "2", "--resume", "--out", str(tmp_path / "split")], tmp_path)
    a, b = _weights(tmp_path / "full" / "last.pth"), _weights(tmp_path / "split" / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ranks = torch.load(tmp_path / "split" / "last.pth", weights_only=True)["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
