import pytest
import torch
from conftest import tiny_vit

from dynamicvit import sparsify
from dynamicvit.core.flops import count_flops
from dynamicvit.methods.schedule_search import search_schedule


def test_keep_schedule_sets_the_counts_and_keep_rate_clears_it():
    model = sparsify(tiny_vit(), keep_rate=0.7).eval()
    model.keep_schedule = [0.9, 0.5, 0.25]
    assert model.keep_counts(64) == [57, 32, 16] and model.keep_targets() == [0.9, 0.5, 0.25]
    assert model(torch.randn(1, 3, 32, 32), return_decisions=True).features.shape[1] == 1 + 16
    model.keep_rate = 0.5
    assert model.keep_counts(64) == [32, 16, 8]
    with pytest.raises(ValueError, match="non-increasing"):
        model.keep_schedule = [0.5, 0.9, 0.1]
    with pytest.raises(ValueError, match="3 non-increasing"):
        model.keep_schedule = [0.5]


def test_search_stays_within_the_rho_schedules_macs_and_never_loses_accuracy():
    torch.manual_seed(0)
    dense = tiny_vit().eval()
    model = sparsify(tiny_vit(), keep_rate=0.7).eval()
    model.load_state_dict(dense.state_dict(), strict=False)
    images = torch.randn(32, 3, 32, 32)
    with torch.no_grad():
        labels = dense(images).argmax(-1)  # agreement with the dense model
    dense_macs = count_flops(dense).total
    result = search_schedule(model, images, labels, 0.6, dense_macs, rounds=1)
    assert result["best"]["accuracy"] >= result["start"]["accuracy"]
    assert model.keep_schedule == result["best"]["schedule"]
    start = sparsify(tiny_vit(), keep_rate=0.7)
    from dynamicvit.methods import set_budget

    start_fraction = set_budget(start, 0.6, dense_macs)
    assert result["macs_fraction"] <= start_fraction + 1e-9
