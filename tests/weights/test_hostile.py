"""Files from elsewhere are read as data: a checkpoint's pickled code never runs."""

import argparse
import os

import pytest
import torch

from dynamicvit.cli import main
from dynamicvit.core.files import CheckpointError
from dynamicvit.weights.checkpoint import Dropped, read_checkpoint


class _Payload:
    """Unpickling this would create a file (the classic ``__reduce__`` attack)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.promise(
    "hostile files",
    "a checkpoint whose pickled extra would run code (`__reduce__` → `os.system`) is refused before "
    "anything runs: `cannot read checkpoint … Trying to load unsupported GLOBAL posix.system …`",
)
def test_a_pickled_payload_in_a_checkpoint_runs_nothing(tmp_path, capsys):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "extra": _Payload(str(target))}, path)
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*GLOBAL posix.system") as caught:
        read_checkpoint(path)
    assert "\n" not in str(caught.value) and not target.exists()
    assert main(["eval", "--checkpoint", str(path)]) == 2 and not target.exists()
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.promise(
    "hostile files",
    "other unknown classes in a checkpoint (the release's `argparse.Namespace`) are read as inert data",
)
def test_the_release_namespace_is_read_as_data(tmp_path):
    path = tmp_path / "release.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(base_rate=0.7)}, path)
    args = read_checkpoint(path)["args"]
    assert isinstance(args, Dropped) and type(args).__module__ == "argparse"


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"model": "hf-hub:someone/model"}, "config names model 'hf-hub:someone/model'"),
        ({"model": "no_such_architecture"}, "config names model 'no_such_architecture'"),
        ({"model": "deit_tiny_patch16_224", "model_kwargs": {"checkpoint_path": "/etc/passwd"}}, "model_kwargs"),
        ({"model": "deit_tiny_patch16_224", "model_kwargs": {"pretrained_cfg_overlay": {"file": "x"}}}, "model_kwargs"),
        ({"model": "deit_tiny_patch16_224", "workers": 10**6}, "--workers must be 0 to 256"),
        ({"model": "deit_tiny_patch16_224", "img_size": 10**6}, "--img-size must be 1 to 8192 pixels"),
    ],
)
@pytest.mark.promise(
    "hostile files",
    "a checkpoint config naming `hf-hub:…` or an unregistered model, with `model_kwargs` such as "
    "`checkpoint_path` or `pretrained_cfg_overlay`, or with huge `workers` or `img_size`: one line "
    "(`config names model '…', which timm and dynamicvit do not register`, `config model_kwargs … hold "
    "more than architecture values`, `--workers must be 0 to 256`)",
)
def test_a_checkpoint_config_is_read_through_an_allow_list(config, names, tmp_path, capsys):
    path = tmp_path / "foreign.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "config": config}, path)
    assert main(["eval", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert names in err and err.count("\n") == 1, err
