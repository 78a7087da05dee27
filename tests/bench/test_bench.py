import json

import pytest
import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.bench.flops_report import compare_flops
from dynamicvit.bench.throughput import benchmark, benchmark_training, sliced_forward
from dynamicvit.bench.timing import peak_memory_mb, time_callables
from dynamicvit.cli import main
from dynamicvit.methods import METHODS


def test_sliced_limit_at_full_keep_equals_model():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=1.0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(sliced_forward(model)(x), model(x), atol=1e-5)


def test_sliced_limit_with_scoring_runs_the_predictors_and_gives_the_same_logits():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.5).eval()
    calls = []
    for predictor in model.score_predictor:
        predictor.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(sliced_forward(model, score=True)(x), sliced_forward(model)(x))
    n = model.num_patches
    assert calls == [(2, n), *((2, k) for k in model.keep_counts()[:-1])]


def test_sliced_limit_runs_the_kept_token_counts():
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.5).eval()
    seen = []
    model.blocks[-1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    with torch.no_grad():
        sliced_forward(model)(torch.randn(1, 3, 32, 32))
    assert seen == [1 + model.keep_counts()[-1]]


def test_time_callables_reports_each_function(monkeypatch):
    """A stubbed clock that each call advances by a known amount: the medians are those amounts."""
    import dynamicvit.bench.throughput as bench

    clock = {"now": 0.0}
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock["now"])
    calls = {"a": 0, "b": 0}
    cost = {"a": [2.0, 9.0, 2.0, 2.0, 2.0], "b": [1.0] * 5}

    def make(name):
        def fn(x):
            calls[name] += 1
            if calls[name] > 2:  # the two warm-up calls are not timed
                clock["now"] += cost[name][calls[name] - 3]
            return x

        return fn

    secs = time_callables({"a": make("a"), "b": make("b")}, torch.zeros(1), warmup=2, repeats=5)
    assert secs == {"a": 2.0, "b": 1.0}  # medians: one slow call of a does not move it
    assert calls == {"a": 7, "b": 7}


def test_benchmark_turns_timings_into_the_right_ratios(monkeypatch):
    """Timings are stubbed with known values: img/s, speed-ups and fractions of the limit follow."""
    import dynamicvit.bench.throughput as bench

    seconds = {"dense": [0.4, 0.5, 0.6], "sparse": [0.25, 0.2, 0.3], "limit": [0.2] * 3, "limit+predictors": [0.22] * 3}
    seconds["merged drops"] = [0.4] * 3
    seen = {}

    def fake_time_runs(fns, x, warmup, repeats):
        seen.update(fns)
        return {name: seconds[name] for name in fns}

    monkeypatch.setattr(bench, "time_runs", fake_time_runs)
    r = benchmark("deit_tiny_patch16_224", keep_rate=0.5, batch_size=2, img_size=32, patch_size=8)
    assert set(seen) == set(seconds)
    assert r["img_per_s"] == pytest.approx({"dense": 4.0, "sparse": 8.0, "limit": 10.0, "limit+predictors": 2 / 0.22})
    assert r["speedup"] == pytest.approx(2.0) and r["limit_speedup"] == pytest.approx(2.5)
    assert r["fraction_of_limit"] == pytest.approx(0.8) and r["predictors_fraction_of_limit"] == pytest.approx(
        0.2 / 0.22
    )
    assert r["merged_fraction_of_fixed"] == pytest.approx(5 / 8)  # 5 img/s merging against 8 dropping
    assert seen["merged drops"].merge_dropped and not seen["sparse"].merge_dropped
    assert r["variants"]["sparse"]["latency_ms"]["p50"] == pytest.approx(250.0)


def test_peak_memory_counts_live_activations():
    def fn(x):
        a = x.repeat(4, 1)  # 4 × 4 KB alive ...
        b = a * 2  # ... plus another 16 KB at the peak
        del a
        return b.sum()

    peak = peak_memory_mb(fn, torch.zeros(1, 1024))
    assert abs(peak * 2**20 - 2 * 16 * 1024) <= 64


def test_bench_variants_compile_and_onnx(capsys):
    r = benchmark(
        "deit_tiny_patch16_224",
        keep_rate=0.5,
        batch_size=2,
        img_size=32,
        patch_size=8,
        depth=4,
        warmup=1,
        repeats=3,
        compile="aot_eager",  # the plumbing; inductor's C++ build takes minutes on 2 cores
        onnx=True,
    )
    v = r["variants"]
    assert set(v) == {
        "dense",
        "sparse",
        "limit",
        "limit+predictors",
        "merged drops",
        "dense compiled",
        "sparse compiled",
        "dense onnx",
        "sparse onnx",
    }
    for row in v.values():
        lat = row["latency_ms"]
        assert row["img_per_s"] > 0 and lat["p50"] <= lat["p90"] <= lat["p99"]
    assert v["dense"]["speedup"] == 1.0 and "compile_seconds" in v["sparse compiled"]
    assert v["dense"]["peak_mb"] >= v["limit"]["peak_mb"] > 0 and v["dense onnx"]["peak_mb"] is None


def test_bench_cli_matrix(capsys):
    args = ["bench", "--models", "deit_tiny_patch16_224", "--img-size", "32", "--batch-sizes", "1", "3"]
    assert main([*args, "--repeats", "2", "--warmup", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["batch_size"] for r in rows] == [1, 3]
    assert main([*args, "--repeats", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "p99 ms" in out and "merged drops (same kept counts):" in out


def test_training_step_benchmark_frozen_backbone_keeps_less(capsys):
    r = benchmark_training(
        "vit_tiny_patch16_224", batch_size=2, warmup=0, repeats=1, img_size=32, patch_size=8, depth=4
    )
    rows = {"dense", "fine-tune", "fine-tune, frozen prefix", "fine-tune, unfused attention", "calibrate"}
    assert set(r["seconds"]) == set(r["peak_mb"]) == rows
    assert r["frozen_weights"] > 0 and r["time_vs_dense"]["dense"] == 1.0
    # frozen weights need no gradients: no weight gradients, no activations kept for the blocks before pruning
    assert r["peak_mb"]["calibrate"] < 0.8 * r["peak_mb"]["fine-tune"]
    argv = ["bench", "--training", "--model", "vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "2"]
    assert main([*argv, "--repeats", "1", "--warmup", "0"]) == 0
    assert "calibrate" in capsys.readouterr().out


def test_noise_bound_rows_are_flagged_and_warned(monkeypatch, capsys):
    """Stubbed timings: a row whose p90 exceeds 1.5x its p50 is flagged and the command warns once."""
    import dynamicvit.bench.throughput as bench
    from dynamicvit.cli import main

    steady, noisy = [0.2] * 9 + [0.21], [0.2] * 8 + [0.5, 0.5]  # p90 / p50: 1.05 and 2.5
    seconds = {"dense": steady, "sparse": noisy, "limit": steady, "limit+predictors": steady, "merged drops": steady}
    monkeypatch.setattr(bench, "time_runs", lambda fns, *a, **k: {name: seconds[name] for name in fns})
    r = benchmark("deit_tiny_patch16_224", keep_rate=0.5, batch_size=2, img_size=32, patch_size=8)
    assert {n: v["noisy"] for n, v in r["variants"].items()} == {
        "dense": False, "sparse": True, "limit": False, "limit+predictors": False, "merged drops": False
    }  # fmt: skip
    args = ["bench", "--model", "deit_tiny_patch16_224", "--img-size", "32", "--batch-size", "2", "--keep-rate", "0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("warning: p90 above 1.5x p50 for sparse:") == 1


@pytest.mark.parametrize("mode", [["--training"], ["--keep-mode", "fixed"]])
def test_bench_save_writes_every_mode_with_its_provenance(mode, tmp_path, monkeypatch, capsys):
    """--save is honoured whatever bench measures (stubbed measurements, the file is what they returned)."""
    import dynamicvit.bench.throughput as bench
    from dynamicvit.cli import main

    run = {"model": "m", "batch_size": 1, "repeats": 1, "seconds": {}, "peak_mb": {}, "variants": {}}
    run |= {"time_vs_dense": {}, "memory_vs_dense": {}, "threshold_fraction_of_fixed": None, "fraction_of_limit": None}
    monkeypatch.setattr(bench, "benchmark_training", lambda *a, **k: run)
    monkeypatch.setattr(bench, "benchmark", lambda *a, **k: run)
    out = tmp_path / "r.json"
    assert main(["bench", *mode, "--model", "deit_tiny_patch16_224", "--json", "--save", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["runs"] == [run] and saved["provenance"]["command"].startswith("dynamicvit bench ")


@pytest.mark.cuda
def test_bench_times_on_the_gpu_with_cuda_events():
    r = benchmark("deit_tiny_patch16_224", batch_size=4, warmup=2, repeats=3)
    assert r["device"] == torch.cuda.get_device_name() and r["img_per_s"]["sparse"] > 0


@pytest.mark.parametrize("method", list(METHODS))
def test_bench_and_flops_run_every_method(method, capsys):
    """One builder for every tool: each registered method is benchmarked and counted, ToMe's and MCTF's ``r``
    tuned to DynamicViT's MACs at the keep rate (equal cost)."""
    kwargs = {"keep_rate": 0.7, "img_size": 32, "patch_size": 8, "depth": 4}
    r = benchmark("deit_tiny_patch16_224", method=method, batch_size=2, warmup=0, repeats=1, **kwargs)
    assert r["method"] == method and r["img_per_s"]["sparse"] > 0
    flops = compare_flops("deit_tiny_patch16_224", method=method, **kwargs)
    paper = compare_flops("deit_tiny_patch16_224", **kwargs)
    assert flops["knob"] == r["knob"] and flops["ratio"] < 1
    if method in ("tome", "mctf"):
        assert abs(flops["ratio"] - paper["ratio"]) < 0.03
    else:
        assert flops["knob"] == {"keep_rate": 0.7}


def test_bench_and_flops_commands_take_a_method(capsys):
    base = ["--model", "deit_tiny_patch16_224", "--img-size", "64", "--method", "tome"]
    assert main(["flops", *base]) == 0
    assert "tome (r " in capsys.readouterr().out
    assert main(["bench", *base, "--batch-size", "1", "--repeats", "1", "--warmup", "0"]) == 0
    assert "tome, r " in capsys.readouterr().out
    assert main(["bench", *base, "--keep-mode", "threshold"]) == 2
    assert "tome (ToMeVisionTransformer) has no threshold keep mode" in capsys.readouterr().err
