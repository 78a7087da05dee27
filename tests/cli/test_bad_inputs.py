"""Every command with bad input: exit status 2, one line on stderr naming the flag or file, no traceback,
and the working folder byte-identical afterwards (nothing created, changed or deleted)."""

import hashlib
from pathlib import Path

import pytest

from dynamicvit.cli import main

COMMANDS = ("demo", "train", "compare", "eval", "calibrate", "viz", "export", "models", "flops", "tune", "bench")
TINY = "deit_tiny_patch16_224"

# (command line with {d} for the folder, what the one line must contain)
CASES = [
    ("demo --out {d}/notes.txt", "notes.txt"),
    ("demo --out {d}/empty --resume --overwrite", "--resume and --overwrite exclude each other"),
    ("demo --out {d}/run --data-dir {d}/missing", "missing"),
    ("train --epochs 0 --out {d}/run", "--epochs must be at least 1"),
    ("train --lr -1 --out {d}/run", "--lr must be positive"),
    ("train --dense --out {d}/notes.txt/run", "is not a writable folder"),
    ("compare --bench-batch 0 --out {d}/cmp", "argument --bench-batch: must be at least 1, got 0"),
    ("compare --budgets 1.5 --out {d}/cmp", "argument --budgets: must be in (0, 1], got 1.5"),
    ("compare --out {d}/cmp", "--teacher-checkpoint"),
    ("eval --checkpoint {d}/missing.pth", "missing.pth"),
    ("eval --checkpoint {d}/corrupt.pth", "corrupt.pth"),
    ("eval --checkpoint {d}/corrupt.pth --picture {d}", "--picture"),
    ("calibrate --checkpoint {d}/corrupt.pth --out {d}/c.pth --images 1", "--images must be at least"),
    ("calibrate --checkpoint {d}/corrupt.pth --out {d}", "--out"),
    ("calibrate --checkpoint {d}/corrupt.pth --out {d}/c.pth", "corrupt.pth"),
    ("viz {d}/a.png --checkpoint {d}/corrupt.pth --out {d}", "--out"),
    ("viz {d}/missing.png --checkpoint {d}/corrupt.pth --out {d}/k.png", "no image file at"),
    ("viz {d}/a.png --checkpoint {d}/corrupt.pth --out {d}/k.png --keep-rate 2", "argument --keep-rate"),
    ("export --onnx {d}/m.onnx --model " + TINY + " --opset 7", "--opset must be 18 to 23"),
    ("export --onnx {d} --model " + TINY, "--onnx"),
    ("export --onnx {d}/m.onnx", "give --checkpoint PATH or --model NAME"),
    ("models nothing*", "no zoo model matches"),
    ("app --port 70000", "argument --port: must be a port in 1..65535"),
    ("app --checkpoint {d}/missing.pth", "no checkpoint file at"),
    ("models a b", "unrecognized arguments: b"),
    ("models --json", "unrecognized arguments: --json"),
    ("flops --model " + TINY + " --img-size 0", "argument --img-size: must be at least 1"),
    ("flops --model " + TINY + " --keep-rate 2", "argument --keep-rate: must be in (0, 1]"),
    ("flops --model resnet18", "ResNet is not supported"),
    ("tune --model " + TINY + " --target-speedup 0", "argument --target-speedup: must be positive"),
    ("tune --model " + TINY + " --target-ms 5 --rates 1.5", "argument --rates: must be in (0, 1]"),
    ("tune --model " + TINY, "one of the arguments --target-speedup --target-ms is required"),
    ("bench --model " + TINY + " --repeats 0", "argument --repeats: must be at least 1"),
    ("bench --model " + TINY + " --batch-size 0", "argument --batch-size/--batch-sizes: must be at least 1"),
    ("bench --training --model " + TINY + " --keep-rate 0", "argument --keep-rate: must be in (0, 1]"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def test_the_table_covers_every_command_three_times():
    counts = {c: sum(case.split()[0] == c for case, _ in CASES) for c in COMMANDS}
    assert counts == dict.fromkeys(COMMANDS, 3)


@pytest.mark.promise(
    "bad input",
    "a count that must be positive (`--repeats 0`, `--batch-size 0`, `--img-size 0`, `--bench-batch "
    "0`) → `argument --repeats: must be at least 1, got 0`; `--keep-rate 2` (commands other than "
    "train) → `argument --keep-rate: must be in (0, 1], got 2`",
)
@pytest.mark.parametrize(("line", "names"), CASES, ids=[case for case, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(line, names, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that wrongly writes into the current folder shows too
    (tmp_path / "notes.txt").write_text("not a folder")
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x02 not a checkpoint")
    (tmp_path / "a.png").write_bytes(b"not looked at")
    (tmp_path / "empty").mkdir()
    before = _snapshot(tmp_path)
    assert main(line.format(d=tmp_path).split()) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("dynamicvit"), err
    assert names in err, err
    assert _snapshot(tmp_path) == before
