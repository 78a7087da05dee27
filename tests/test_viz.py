import numpy as np
import pytest
import torch
from conftest import tiny_vit
from PIL import Image

import dynamicvit
from dynamicvit.viz import grey_out, kept_mask, save_kept_token_grid


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
    skimage_data = pytest.importorskip("skimage.data")
    photo = np.asarray(Image.fromarray(getattr(skimage_data, source)()).resize((32, 32)))
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.6).eval()
    x = torch.from_numpy(photo.copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
    decisions = model.forward_with_decisions(x).decisions
    path = tmp_path / "kept.png"
    save_kept_token_grid([photo], decisions, (8, 8), (4, 4), path, row_titles=[source])
    assert Image.open(path).size[0] > Image.open(path).size[1]  # 1 row, 4 panels
