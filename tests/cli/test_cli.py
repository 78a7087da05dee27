import json
import re
import subprocess
import sys

import pytest

from dynamicvit.cli import build_parser, config_from_args, main
from dynamicvit.config import RunConfig, config_fields


def test_flops_json(capsys):
    assert main(["flops", "--model", "deit_tiny_patch16_224", "--keep-rate", "0.7", "--img-size", "64", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["sparse"]["tokens"] == {"input": 16, "stage 1": 11, "stage 2": 7, "stage 3": 5}
    assert r["ratio"] < 1


def test_flops_table(capsys):
    assert main(["flops", "--model", "deit_tiny_patch16_224", "--img-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "predictors" in out and "ratio" in out


def test_bench_json(capsys):
    args = [
        "bench",
        "--model",
        "deit_tiny_patch16_224",
        "--img-size",
        "32",
        "--batch-size",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
    ]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["batch_size"] == 2


def test_bad_arguments_exit_2_with_message(capsys):
    assert main(["flops", "--model", "deit_tiny_patch16_224", "--keep-rate", "0"]) == 2
    assert "argument --keep-rate: must be in (0, 1]" in capsys.readouterr().err
    assert main(["flops", "--model", "resnet18"]) == 2
    assert "not supported" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--val-limit", "0"], "--val-limit must be a positive number of images, got 0"),
        (["--train-limit", "-3"], "--train-limit must be a positive number of images, got -3"),
        (["--distractors", "-1"], "--distractors must be 0 or more, got -1"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--min-lr", "-0.001"], "--min-lr must be 0 or more, got -0.001"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--keep-rate", "1.5"], "--keep-rate must be in (0, 1], got 1.5"),
    ],
)
@pytest.mark.promise(
    "bad input",
    "`--val-limit 0`, `--train-limit -3` → `--val-limit must be a positive number of images, got 0`",
)
@pytest.mark.promise(
    "bad input",
    "`--distractors -1`, `--min-lr -0.001`, … → `--distractors must be 0 or more, got -1`",
)
@pytest.mark.promise("bad input", "`--epochs 0`, `--batch-size 0` → `--epochs must be at least 1, got 0`")
@pytest.mark.promise("bad input", "`--keep-rate 1.5` (train) → `--keep-rate must be in (0, 1], got 1.5`")
def test_bad_training_values_exit_2_before_any_work(tmp_path, capsys, args, message):
    assert main(["train", "--dense", "--out", str(tmp_path / "run"), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"dynamicvit train: error: {message}\n" and not (tmp_path / "run").exists()


@pytest.mark.promise(
    "bad input",
    "`--out` / `--picture` / `--onnx` where nothing can be written → "
    "`cannot write to --out afile/run/…: afile is not a writable folder` (same for `--picture`, `--onnx`)",
)
def test_unwritable_outputs_exit_2_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    assert main(["train", "--dense", "--out", str(tmp_path / "file" / "run")]) == 2
    assert re.search(
        r"^dynamicvit train: error: cannot write to --out .*file/run/\S+: .*file is not a writable folder$",
        capsys.readouterr().err,
        re.M,
    )
    args = ["eval", "--checkpoint", str(tmp_path / "missing.pth"), "--picture", str(tmp_path / "file" / "x.png")]
    assert main(args) == 2  # found before the checkpoint is even read
    assert "--picture" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "dynamicvit", "--help"], capture_output=True, text=True, check=True)
    assert "flops" in out.stdout and "bench" in out.stdout


def test_train_and_eval_commands(tmp_path, fake_fashion, capsys):
    common = [
        "--data",
        "fashion-mnist",
        "--data-dir",
        str(fake_fashion),
        "--img-size",
        "28",
        "--train-limit",
        "32",
        "--val-limit",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--no-progress",
    ]
    kw = [
        "--model",
        "vit_tiny_patch16_224",
        "--model-kwargs",
        '{"patch_size": 7, "embed_dim": 32, "depth": 4, "num_heads": 2}',
    ]
    assert main(["train", "--dense", *kw, *common, "--out", str(tmp_path / "t")]) == 0
    assert (
        main(
            [
                "train",
                *kw,
                *common,
                "--teacher-checkpoint",
                str(tmp_path / "t" / "last.pth"),
                "--keep-rate",
                "0.5",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "s" / "last.pth"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_tokens"] == [8, 4, 2]
    assert main(["train", *kw, *common, "--out", str(tmp_path / "x")]) == 2
    assert "teacher-checkpoint" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "nope.pth")]) == 2


def test_train_flags_are_generated_from_the_config(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # no line wrapping inside the help texts
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for _, f in config_fields():
        assert " ".join(f.metadata["help"].split()) in text, f.name
    args = build_parser().parse_args(
        ["train", "--teacher", "deit_tiny_patch16_224", "--prune-layers", "1", "2", "--no-progress", "--amp"]
        + ["--model-kwargs", '{"depth": 3}', "--out", "somewhere", "--lr", "0.5", "--method", "evit"]
    )
    cfg = config_from_args(args)
    assert (cfg.model.model, cfg.budget.prune_layers, cfg.run.progress, cfg.run.amp) == (
        "deit_tiny_patch16_224",
        [1, 2],
        False,
        True,
    )
    assert (cfg.model.model_kwargs, cfg.run.out_dir, cfg.schedule.lr, cfg.model.method) == (
        {"depth": 3},
        "somewhere",
        0.5,
        "evit",
    )
    assert config_from_args(build_parser().parse_args(["train"])) == RunConfig()


def _release_deit_tiny(tmp_path):
    """A DeiT-Ti DynamicViT saved as the release saves (1000 classes, pickled ``args``, no config)."""
    import argparse

    import torch

    import dynamicvit

    model = dynamicvit.create_model("deit_tiny_patch16_224", keep_rate=0.7).eval()
    path = tmp_path / "release_deit_tiny.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(base_rate=0.7)}, path)
    return model, path


def test_release_checkpoint_through_viz_eval_export(tmp_path, capsys):
    """A release file has no saved config: viz names ImageNet classes (not Fashion-MNIST's: the old
    IndexError), takes --img-size (position embeddings resampled), and export takes it with --model."""
    import numpy as np
    from PIL import Image
    from timm.data import ImageNetInfo

    from dynamicvit.builder import load_trained

    model, path = _release_deit_tiny(tmp_path)
    image = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(image)
    args = ["viz", str(image), "--checkpoint", str(path), "--model", "deit_tiny_patch16_224", "--out"]
    assert main([*args, str(tmp_path / "a.png"), "--img-size", "320"]) == 0
    out = capsys.readouterr().out
    label = out.split(": ", 1)[1].rsplit(", kept", 1)[0]
    assert label in {ImageNetInfo().index_to_description(i) for i in range(1000)}
    assert "kept 280 / 196 / 137 tokens" in out  # 20×20 = 400 patches at 320 px
    loaded, _ = load_trained(path, model="deit_tiny_patch16_224", img_size=320)
    assert loaded.pos_embed.shape[1] == 1 + 400 and loaded.keep_rate == 0.7
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(path), "--model", "deit_tiny_patch16_224", "--onnx", str(onnx)]) == 0
    assert onnx.is_file() and "max |onnx − torch|" in capsys.readouterr().out


def test_models_command_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("dynamicvit_")]
    assert len(rows) == 15 and any("convnext_tiny" in r and "0.9" in r and "82.06" in r for r in rows)
    assert main(["models", "nothing*"]) == 2
    assert "no zoo model matches" in capsys.readouterr().err


def test_flops_takes_zoo_names_with_the_release_budget(capsys):
    """dynamicvit_convnext_tiny.r0_7 at 224: the release keeps 137, 97, 58 of 196 locations."""
    assert main(["flops", "--model", "dynamicvit_convnext_tiny.r0_7", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["keep_rate"] == 0.7
    assert list(r["sparse"]["tokens"].values()) == [196, 137, 97, 58]


def test_data_the_model_cannot_take_exits_2_and_leaves_the_run_folder_alone(tmp_path, fake_fashion, capsys):
    """dvit_tiny_fmnist is built for 48x48; the default cluttered canvas is 64: one line, exit 2, and an
    --overwrite of an existing run deletes nothing, because the folder is touched only after setup."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # what a run's log holds
    args = ["train", "--dense", "--data-dir", str(fake_fashion), "--train-limit", "64", "--out", str(run)]
    assert main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "dynamicvit train: error: dvit_tiny_fmnist is built for 48x48 images but the data set's are 64x64; "
        "pass --img-size 64 (or data of the model's size, e.g. --canvas 48)\n"
    )
    assert (run / "metrics.jsonl").read_text() == '{"epoch": 1}\n'
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]
    fresh = tmp_path / "fresh"
    assert main(["train", "--dense", "--data-dir", str(fake_fashion), "--train-limit", "64", "--out", str(fresh)]) == 2
    assert not fresh.exists()


@pytest.mark.promise(
    "a full disk", "a command that cannot write exits with status 1 and one line (not a traceback, not a usage error)"
)
def test_a_failed_write_is_one_line_with_exit_status_1(capsys):
    """A full disk is not the user's input (status 2) nor an internal error (a traceback hint): one line, 1."""
    from dynamicvit.cli.registry import COMMANDS, Command, register_command
    from dynamicvit.core.errors import WriteError

    def full(args):
        raise WriteError("cannot write out.pth: no space left on the device (0 MiB free there)")

    register_command(Command("full", arguments=lambda p: None, run=full, help="fails to write"))
    try:
        assert main(["full"]) == 1
    finally:
        COMMANDS.remove("full")
    err = capsys.readouterr().err
    assert err == "dynamicvit full: error: cannot write out.pth: no space left on the device (0 MiB free there)\n"
