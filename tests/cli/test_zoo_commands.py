"""Each command that builds a model from a name takes a zoo name of every released family."""

import json

import pytest

from dynamicvit.cli import main

ZOO = [
    "dynamicvit_deit_small.r0_7",
    "dynamicvit_lvvit_s.r0_7",
    "dynamicvit_convnext_tiny.r0_7",
    "dynamicvit_swin_tiny.r0_7",
]
FAST = ["--batch-size", "1", "--warmup", "0", "--repeats", "1", "--json"]


@pytest.mark.parametrize("name", ZOO)
def test_flops_bench_and_tune_take_every_family(name, capsys):
    assert main(["flops", "--model", name, "--json"]) == 0
    flops = json.loads(capsys.readouterr().out)
    assert flops["keep_rate"] == 0.7 and flops["sparse"]["gmacs"] < flops["dense"]["gmacs"]
    assert main(["bench", "--model", name, *FAST]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["keep_rate"] == 0.7 and set(bench["variants"]) >= {"dense", "sparse"}
    assert main(["tune", "--model", name, "--target-speedup", "0.01", "--rates", "0.9", "0.7", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["keep_rate"] == 0.9  # the largest rate meeting the target
