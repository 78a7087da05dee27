"""Tiny timm ViTs for fast CPU tests."""

from __future__ import annotations

import gzip
import io
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

from dynamicvit.config import RunConfig
from dynamicvit.models.lvvit import LVViT

TINY = dict(img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2, num_classes=10)


def file_size_limit(limit: int):
    """A ``preexec_fn`` that gives a child process a real file-size limit of ``limit`` bytes with SIGXFSZ
    ignored, so that writes past it fail with EFBIG as they do with ENOSPC on a full disk."""

    def limit_child() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return limit_child


def write_under_limit(setup: str, write: str, target, limit: int) -> subprocess.CompletedProcess:
    """Run ``setup`` (imports) then ``write`` (a statement writing to ``sys.argv[1]`` = ``target``) in a child
    process under a real ``limit``-byte file-size limit (:func:`file_size_limit`); a ``WriteError`` is printed
    and exits 3, so the test sees the one line a user would."""
    code = (
        f"import sys\nfrom dynamicvit.core.errors import WriteError\n{setup}\n"
        f"try:\n    {write}\nexcept WriteError as err:\n    print(err)\n    sys.exit(3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(target)], preexec_fn=file_size_limit(limit), capture_output=True, text=True
    )


def tiny_vit(kind: str = "plain", **overrides) -> VisionTransformer:
    """A 4-block ViT on 32x32 images (64 patches); kinds: plain, distilled, registers, lvvit."""
    kwargs = {**TINY, **overrides}
    if kind == "distilled":
        return VisionTransformerDistilled(**kwargs)
    if kind == "lvvit":
        return LVViT(**kwargs)
    if kind == "registers":
        kwargs.setdefault("reg_tokens", 2)
    return VisionTransformer(**kwargs)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped, with the reason shown in the summary, where torch sees no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu_check.sh on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    """Every test runs in its own temporary folder: a default output path (runs/..., kept_tokens.png)
    lands there, never in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same seed and leaves torch's determinism switch as it found it
    (a Trainer with deterministic=True turns it on for the process)."""
    torch.manual_seed(0)
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as a gzipped idx file, the Fashion-MNIST format."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_fake_fashion(directory: Path, train: int = 320, test: int = 160, seed: int = 0) -> Path:
    """A small learnable stand-in for Fashion-MNIST: class c is a bright bar at a class-specific row."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c : 5 + 2 * c, 4:24] = 255
        write_idx(directory / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte.gz", labels)
    return directory


@pytest.fixture(scope="session")
def fake_fashion(tmp_path_factory) -> Path:
    return make_fake_fashion(tmp_path_factory.mktemp("fashion"))


def png_bytes(i: int) -> bytes:
    """A 12x12 RGB noise PNG, different for each ``i``."""
    pixels = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def make_shards(folder: Path, counts: dict[str, list[int]]) -> Path:
    """Shards as ``webdataset.ShardWriter`` writes them; sample ``i`` (over all shards of a split) has class ``i``
    so a test can tell the images apart by label."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    for split, sizes in counts.items():
        i = 0
        for s, size in enumerate(sizes):
            with wds.TarWriter(str(folder / f"{split}-{s:04d}.tar")) as sink:
                for _ in range(size):
                    sink.write({"__key__": f"{split}{i:05d}", "png": png_bytes(i), "cls": str(i).encode()})
                    i += 1
    return folder


def make_hf(folder: Path, train: int = 32, val: int = 9, columns=("image", "label")) -> Path:
    import datasets

    def split(n: int, offset: int) -> datasets.Dataset:
        images = [Image.open(io.BytesIO(png_bytes(offset + i))) for i in range(n)]
        return datasets.Dataset.from_dict({columns[0]: images, columns[1]: list(range(n))})

    datasets.DatasetDict({"train": split(train, 0), "validation": split(val, 1000)}).save_to_disk(str(folder))
    return folder


TINY_KW = {"patch_size": 7, "embed_dim": 32, "depth": 4, "num_heads": 2}


def tiny_cfg(tmp_path, data_dir, name="run", **overrides) -> RunConfig:
    """A seconds-long training config: 4-block ViT on 28×28 fake Fashion-MNIST."""
    args = dict(
        model="vit_tiny_patch16_224",
        model_kwargs=TINY_KW,
        data="fashion-mnist",
        data_dir=str(data_dir),
        img_size=28,
        train_limit=64,
        val_limit=32,
        epochs=2,
        batch_size=16,
        lr=1e-3,
        warmup_epochs=0,
        freeze_backbone_epochs=0,
        out_dir=str(tmp_path / name),
        progress=False,
        deterministic=True,
    )
    return RunConfig.of(**{**args, **overrides})
