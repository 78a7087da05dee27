import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.bench import benchmark, sliced_forward, time_callables


def test_sliced_limit_at_full_keep_equals_model():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=1.0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sliced_forward(model)(x), model(x), atol=1e-5)


def test_sliced_limit_runs_the_kept_token_counts():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.5).eval()
    seen = []
    model.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    with torch.no_grad():
        sliced_forward(model)(torch.randn(1, 3, 32, 32))
    assert seen == [1 + model.keep_counts()[-1]]


def test_time_callables_reports_each_function():
    calls = {"a": 0, "b": 0}

    def make(name):
        def fn(x):
            calls[name] += 1
            return x

        return fn

    secs = time_callables({"a": make("a"), "b": make("b")}, torch.zeros(1), warmup=2, repeats=5)
    assert set(secs) == {"a", "b"} and all(s >= 0 for s in secs.values())
    assert calls == {"a": 7, "b": 7}


def test_benchmark_reports_consistent_ratios():
    r = benchmark("deit_tiny_patch16_224", keep_rate=0.5, batch_size=1, img_size=32, patch_size=8, warmup=1, repeats=3)
    ips = r["img_per_s"]
    assert set(ips) == {"dense", "sparse", "limit"}
    assert abs(r["speedup"] - ips["sparse"] / ips["dense"]) < 1e-9
    assert abs(r["fraction_of_limit"] - ips["sparse"] / ips["limit"]) < 1e-9
