"""build_untrained: the export command's model, built by the same rules as a checkpoint's."""

import pytest
import torch

from dynamicvit.builder import build_untrained
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.methods import method_of

TINY = "deit_tiny_patch16_224"


@pytest.mark.parametrize("method", ["dense", "dynamicvit", "tome"])
def test_method_and_keep_rate_reach_the_model(method):
    model = build_untrained(TINY, method, keep_rate=0.5, img_size=32)
    assert not model.training
    if method == "dense":
        assert find_reducer(model) is None
    else:
        assert method_of(model).name == method
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_bad_keep_rate_is_refused_before_building():
    with pytest.raises(ValueError, match=r"--keep-rate must be in \(0, 1\], got 1.5"):
        build_untrained(TINY, "dynamicvit", keep_rate=1.5)


def test_mask_rule_reaches_the_student_and_only_predictor_methods_take_it(tmp_path, fake_fashion):
    from conftest import tiny_cfg

    from dynamicvit.builder import reduce
    from dynamicvit.builder.models import build_dense

    cfg = tiny_cfg(tmp_path, fake_fashion, mask_rule="topk")
    student = reduce(build_dense(cfg, 10, 1, (1, 28, 28)), cfg)
    assert find_reducer(student).mask_mode == "topk"
    cfg = tiny_cfg(tmp_path, fake_fashion, mask_rule="topk", method="tome")
    with pytest.raises(ValueError, match="--mask-rule topk shapes predictor training; method tome has none"):
        reduce(build_dense(cfg, 10, 1, (1, 28, 28)), cfg)


def test_merge_dropped_reaches_dynamicvit_and_only_it(tmp_path, fake_fashion):
    from conftest import tiny_cfg

    from dynamicvit.builder import reduce
    from dynamicvit.builder.models import build_dense

    cfg = tiny_cfg(tmp_path, fake_fashion, merge_dropped=True)
    assert find_reducer(reduce(build_dense(cfg, 10, 1, (1, 28, 28)), cfg)).merge_dropped
    cfg = tiny_cfg(tmp_path, fake_fashion, merge_dropped=True, method="evit")
    with pytest.raises(ValueError, match="--merge-dropped is DynamicViT's on plain ViTs; method evit"):
        reduce(build_dense(cfg, 10, 1, (1, 28, 28)), cfg)
