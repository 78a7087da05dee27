from pathlib import Path

import numpy as np
import pytest
import skimage.data
import timm
import torch
from conftest import TINY_KW, tiny_vit
from PIL import Image

import dynamicvit
from dynamicvit.cli import main
from dynamicvit.config import RunConfig
from dynamicvit.draw.panels import decision_cells, grey_out, kept_mask, save_kept_token_grid
from dynamicvit.methods import apply_method

SKIMAGE_DATA = Path(skimage.data.__file__).parent


def test_kept_mask_marks_indices():
    mask = kept_mask(torch.tensor([[0, 5], [3, 2]]), (2, 3))
    assert mask.shape == (2, 2, 3)
    assert mask[0].tolist() == [[True, False, False], [False, False, True]]
    assert mask[1].sum() == 2


def test_grey_out_changes_only_dropped_patches():
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    mask = np.array([[True, False], [False, True]])
    out = grey_out(image, mask, (4, 4))
    assert out.shape == (8, 8, 3)
    assert np.allclose(out[:4, :4, 0], image[:4, :4]) and not np.allclose(out[:4, 4:, 0], image[:4, 4:])


@pytest.mark.parametrize("source", ["astronaut", "coffee"])
def test_grid_on_a_real_photo(tmp_path, source):
    photo = np.asarray(Image.fromarray(getattr(skimage.data, source)()).resize((32, 32)))
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.6).eval()
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    decisions = model.forward_with_decisions(x).decisions
    path = tmp_path / "kept.png"
    save_kept_token_grid([photo], decisions, (8, 8), (4, 4), path, row_titles=[source])
    assert Image.open(path).size[0] > Image.open(path).size[1]  # 1 row, 4 panels
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    save_kept_token_grid([photo], decisions, (8, 8), (4, 4), again, row_titles=[source])
    flipped = [63 - d for d in decisions]  # the same counts, other tokens
    save_kept_token_grid([photo], flipped, (8, 8), (4, 4), other, row_titles=[source])
    pixels = [np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in (path, again, other)]
    assert np.array_equal(pixels[0], pixels[1]) and np.abs(pixels[0] - pixels[2]).sum() > 0  # drawn from the decisions


def _checkpoint(tmp_path, method="dynamicvit", dense=False, in_chans=1, data="fashion-mnist"):
    cfg = RunConfig.of(
        model="vit_tiny_patch16_224",
        model_kwargs=TINY_KW,
        img_size=28,
        data=data,
        dense=dense,
        method=method,
        prune_layers=[1, 2, 3],
    )
    model = timm.create_model(cfg.model.model, img_size=28, num_classes=10, in_chans=in_chans, **TINY_KW)
    if not dense:
        model = apply_method(model, method, prune_layers=[1, 2, 3])
    path = tmp_path / f"{method}{dense}{in_chans}.pth"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, path)
    return path


@pytest.mark.parametrize("in_chans,data", [(1, "fashion-mnist"), (3, "imagefolder")])
def test_viz_cli_on_photos(tmp_path, capsys, in_chans, data):
    ckpt = _checkpoint(tmp_path, in_chans=in_chans, data=data)
    photos = [SKIMAGE_DATA / "astronaut.png", SKIMAGE_DATA / "camera.png"]
    out = tmp_path / "kept.png"
    assert main(["viz", *map(str, photos), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "astronaut.png" in printed and "kept 11 / 7 / 5 tokens" in printed  # 16 patches × 0.7^s
    assert out.stat().st_size > 0


def test_viz_bad_input(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["viz", str(text), "--checkpoint", str(ckpt)]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert main(["viz", str(tmp_path / "missing.png"), "--checkpoint", str(ckpt)]) == 2
    assert "no image file" in capsys.readouterr().err
    photo = str(SKIMAGE_DATA / "camera.png")
    assert main(["viz", photo, "--checkpoint", str(_checkpoint(tmp_path, dense=True))]) == 2
    assert "dense model" in capsys.readouterr().err
    assert main(["viz", photo, "--checkpoint", str(_checkpoint(tmp_path, method="tome"))]) == 2
    assert "merges or pools" in capsys.readouterr().err


def test_viz_hierarchical_shows_slow_path_locations(tmp_path, capsys):
    small = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}
    cfg = RunConfig.of(model="convnext_tiny", model_kwargs=small, data="cluttered-fashion-mnist")
    model = dynamicvit.sparsify(timm.create_model("convnext_tiny", num_classes=10, in_chans=1, **small))
    ckpt = tmp_path / "convnext.pth"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict()}, ckpt)
    out = tmp_path / "fast.png"
    assert main(["viz", str(SKIMAGE_DATA / "coffee.png"), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "kept 137 / 98 / 58 tokens" in capsys.readouterr().out  # 14x14 stage-3 map at 224, [0.7, 0.5, 0.3]
    assert out.stat().st_size > 0


@pytest.mark.parametrize(
    "side, extra, grid, cell",
    [(64, {}, (4, 4), (16, 16)), (70, {}, (4, 4), (18, 18)), (64, {"output_stride": 8}, (8, 8), (8, 8))],
)
def test_slow_path_cells_follow_the_stage_map(side, extra, grid, cell):
    """Stage-3 grid read off the forward, not an assumed stride 16: odd sizes, a dilated stage 3."""
    small = {"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]}
    model = dynamicvit.sparsify(timm.create_model("convnext_tiny", num_classes=3, **small, **extra)).eval()
    with torch.no_grad():
        out = model.forward_with_decisions(torch.randn(1, 3, side, side))
    assert decision_cells(model, (side, side)) == (grid, cell)
    picture = grey_out(np.zeros((side, side)), kept_mask(out.decisions[-1], grid)[0], cell)
    assert picture.shape == (side, side, 3)
