"""Atomic writes, output-folder locks and the writable-path check."""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import write_under_limit

from dynamicvit.core.files import (
    LOCK_NAME,
    FolderInUseError,
    atomic_write,
    atomic_write_text,
    check_writable,
    folder_lock,
    remove_own_temporaries,
)


@pytest.mark.promise(
    "a full disk",
    "any failed write keeps the old file and leaves no temporary file",
)
def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


def test_written_files_get_the_process_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_only_this_package_temporaries_are_removed(tmp_path):
    (tmp_path / ".notes.tmp").write_text("mine")
    (tmp_path / ".dynamicvit-x1-last.pth").write_text("killed write")
    remove_own_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp"]


def _lock_of(pid: int, host: str | None = None) -> str:
    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "2026-01-01 00:00:00"})


def test_a_live_holder_is_named_and_the_folder_left_alone(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(_lock_of(holder.pid))
        with pytest.raises(FolderInUseError, match=f"--out {tmp_path} is in use by process {holder.pid} on "):
            with folder_lock(tmp_path):
                pass
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_holder_is_reported_and_taken_over(tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / LOCK_NAME).write_text(_lock_of(gone.pid))
    with folder_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"taking over the lock of ended process {gone.pid}" in capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_holder_on_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text(_lock_of(1, host="elsewhere"))
    with pytest.raises(FolderInUseError, match="on elsewhere"), folder_lock(tmp_path):
        pass


def test_lock_is_shared_inside_a_process_and_an_empty_new_folder_removed(tmp_path):
    new = tmp_path / "new"
    with folder_lock(new), folder_lock(new):
        assert (new / LOCK_NAME).exists()
    assert not new.exists()  # created for the run, still empty: removed again


@pytest.mark.promise(
    "bad input",
    "a file flag naming a folder (`--picture`, `viz --out`, `--onnx`) → `--picture D is a folder; give a file name`",
)
def test_check_writable_names_the_flag(tmp_path):
    with pytest.raises(ValueError, match=f"--picture {tmp_path} is a folder; give a file name"):
        check_writable(tmp_path, "--picture")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a writable folder"):
        check_writable(tmp_path / "file" / "x.png", "--out")


@pytest.mark.parametrize(
    "write",
    ['atomic_save({"w": torch.zeros(100_000)}, sys.argv[1])', 'atomic_write_text(sys.argv[1], "x" * 400_000)'],
    ids=["torch-zip", "text"],
)
@pytest.mark.promise(
    "a full disk",
    "a checkpoint or text file written past the space is one line naming the file, the cause and the free"
    " space; the previous file stays, no temporary is left",
)
def test_a_write_past_the_space_is_one_line_and_keeps_the_old_file(tmp_path, write):
    """Under a real file-size limit (torch's zip writer fails without an errno, Python's with EFBIG): one line
    naming the file, the cause and the free space; the previous file intact; no temporary file left."""
    target = tmp_path / "ckpt.pth"
    target.write_bytes(b"old")
    run = write_under_limit("import torch\nfrom dynamicvit.core.files import atomic_save, atomic_write_text", write,
                            target, 100_000)  # fmt: skip
    assert run.returncode == 3, run.stderr[-2000:]
    assert run.stdout.startswith(f"cannot write {target}: file too large") and "iB free there" in run.stdout
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


@pytest.mark.promise(
    "a full disk",
    "a log line appended past the space is one line naming the log; the log is cut back to its last whole line",
)
def test_an_append_past_the_space_is_one_line_and_leaves_no_half_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1}\n')
    run = write_under_limit("from dynamicvit.core.files import append_text",
                            "append_text(sys.argv[1], 'x' * 400_000 + '\\n')", log, 100_000)  # fmt: skip
    assert run.returncode == 3, run.stderr[-2000:]
    assert run.stdout.startswith(f"cannot write {log}: file too large") and run.stdout.count("\n") == 1
    assert log.read_text() == '{"epoch": 1}\n'


_DIRECT_WRITES = {"write_text", "write_bytes", "torch.save", "json.dump", "np.save", "np.savez"}
_SAVES = {"save", "savefig"}  # a writer's own save: fine only into the temporary of an atomic_write block


def _direct_writes(path) -> list[str]:
    """The calls in ``path`` that write a file without :func:`atomic_write`: a direct writer, ``open`` for
    writing, or a ``.save``/``.savefig`` whose target is not the name an ``atomic_write`` block bound."""
    import ast

    tree = ast.parse(path.read_text())
    temporaries = {
        item.optional_vars.id
        for node in ast.walk(tree)
        if isinstance(node, ast.With)
        for item in node.items
        if "atomic_write" in ast.unparse(item.context_expr) and isinstance(item.optional_vars, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        attr = name.rsplit(".", 1)[-1]
        opened = name == "open" and any(m in ast.unparse(a) for a in node.args[1:2] for m in "wax")
        targets = [n for a in [*node.args, *(k.value for k in node.keywords)] for n in ast.walk(a)]
        saved = attr in _SAVES and not any(isinstance(n, ast.Name) and n.id in temporaries for n in targets)
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        into_temporary = isinstance(receiver, ast.Name) and receiver.id in temporaries
        written = attr in ("write_text", "write_bytes") and not into_temporary
        if name in _DIRECT_WRITES or written or opened or (saved and node.args):
            found.append(f"{path.name}:{node.lineno}: {name}")
    return found


def test_every_file_the_package_and_its_scripts_write_goes_through_an_atomic_write():
    """A writer that bypasses core.files would leave a half-written file and a cryptic error on a full disk."""
    from pathlib import Path

    import dynamicvit

    package = Path(dynamicvit.__file__).parent
    sources = [*package.rglob("*.py"), *(package.parent / "scripts").glob("*.py")]
    offenders = [hit for path in sorted(sources) if path.name != "files.py" for hit in _direct_writes(path)]
    assert offenders == []


def test_the_direct_write_scan_finds_a_planted_writer(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "def a(p, fig, img, model):\n    p.write_text('x')\n    fig.savefig(p)\n    open(p, 'w')\n"
        "    with atomic_write(p) as tmp:\n        img.save(tmp)\n        tmp.write_bytes(b'')\n    model.save()\n"
    )
    assert [hit.split(": ")[1] for hit in _direct_writes(planted)] == ["p.write_text", "fig.savefig", "open"]
