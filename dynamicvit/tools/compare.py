"""Token-reduction methods side by side at matched FLOPs: accuracy, MACs, measured img/s.

For each budget (a fraction of the dense model's MACs) every method's knob is tuned with
:func:`dynamicvit.methods.set_budget`; methods that train are fine-tuned with the same
engine and recipe (``TrainConfig``); the rest run training-free on the dense weights.
A method with learned modules (DynamicViT's predictors) always trains; the others train only
when the recipe updates the backbone (``freeze_backbone_epochs < epochs``), as otherwise
nothing of them would change. Throughput is measured in one process, all methods of a budget interleaved.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from statistics import median

import torch
from torch import nn

from dynamicvit.builder import build_dense_for_data, build_run_dataset
from dynamicvit.config import TrainConfig, validate
from dynamicvit.core.files import atomic_write_text, folder_lock
from dynamicvit.core.flops import count_flops
from dynamicvit.methods.budget import set_budget
from dynamicvit.methods.registry import METHODS, apply_method, get_method
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.tools.provenance import provenance
from dynamicvit.tools.report import save_tradeoff_plots, write_comparison_markdown
from dynamicvit.tools.timing import time_callables
from dynamicvit.train.run_folder import check_report_folder
from dynamicvit.train.trainer import Trainer

__all__ = ["run_compare", "trains"]


OUTPUTS = ("compare.json", "compare.md", "acc_vs_gmacs.png", "acc_vs_img_per_s.png")


def trains(method: str, cfg: TrainConfig) -> bool:
    """Whether ``method`` is fine-tuned under the recipe ``cfg`` (see the module docstring)."""
    return get_method(method).learned or cfg.freeze_backbone_epochs < cfg.epochs


def _check_args(
    cfg: TrainConfig, budgets: Sequence[float], methods: Sequence[str], bench_batch: int, bench_repeats: int
) -> None:
    """Every argument checked before any work (the dense model's evaluation included)."""
    validate(cfg)
    if not (cfg.pretrained or cfg.teacher_checkpoint):
        raise ValueError("compare needs the trained dense model: pass --teacher-checkpoint PATH or --pretrained")
    for method in methods:
        get_method(method)
    bad = [b for b in budgets if not 0 < b <= 1]
    if bad or not budgets:
        raise ValueError(f"--budgets must be fractions of the dense MACs in (0, 1], got {list(budgets)}")
    for flag, value in (("--bench-batch", bench_batch), ("--bench-repeats", bench_repeats)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")


def _fine_tune(cfg: TrainConfig, method: str, model: nn.Module, out_dir: Path) -> nn.Module:
    """Train ``method`` at the tuned knob of ``model`` with the recipe; a finished run of the same
    configuration is reused (one of another configuration is an error)."""
    run = dataclasses.replace(
        cfg,
        dense=False,
        method=method,
        keep_rate=model.keep_rate,
        tome_r=getattr(model, "tome_r", cfg.tome_r),
        out_dir=str(out_dir),
        resume=cfg.resume and (out_dir / "last.pth").exists(),
    )
    with Trainer(run, reuse_finished=True) as trainer:
        trainer.fit()
    return trainer.eval_model.eval()


def run_compare(
    cfg: TrainConfig,
    budgets: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    methods: Sequence[str] = tuple(METHODS),
    out_dir: str = "runs/compare",
    bench_batch: int = 64,
    bench_repeats: int = 10,
) -> dict:
    """Run the comparison into ``out_dir``, held for this process while it runs; a folder holding an earlier
    comparison needs ``cfg.resume`` (finished fine-tuning runs reused) or ``cfg.overwrite``. Writes
    ``compare.json``, ``compare.md`` and two trade-off plots."""
    _check_args(cfg, budgets, methods, bench_batch, bench_repeats)
    out = Path(out_dir)
    with folder_lock(out):
        check_report_folder(out, OUTPUTS, cfg.resume, cfg.overwrite)
        return _run(cfg, budgets, methods, out, bench_batch, bench_repeats)


def _run(cfg: TrainConfig, budgets, methods, out: Path, bench_batch: int, bench_repeats: int) -> dict:
    """Every method at every budget: tune, fine-tune the trained ones, evaluate, time; then the report."""
    test_set = build_run_dataset(cfg, "test")
    dense = build_dense_for_data(cfg, test_set, pretrained=cfg.pretrained).eval()
    dense_macs = count_flops(dense).total
    x = torch.stack([test_set[i][0] for i in range(min(bench_batch, len(test_set)))])
    dense_result = evaluate(dense, test_set, cfg)
    rows, dense_ips = [], []
    for budget in budgets:
        models = {}
        for method in methods:
            entry = get_method(method)
            model = apply_method(copy.deepcopy(dense), method, prune_layers=cfg.prune_layers, seed=cfg.seed)
            reached = set_budget(model, budget, dense_macs)
            trained = trains(method, cfg)
            if trained:
                model = _fine_tune(cfg, method, model, out / f"{method}_{budget:g}")
            result = evaluate(model, test_set, cfg)
            models[method] = model
            rows.append(
                {
                    "budget": budget,
                    "method": method,
                    "trained": trained,
                    "macs_fraction": reached,
                    "knob": {entry.knob_label: round(getattr(model, entry.knob), 4)},
                    **{k: result[k] for k in ("top1", "gmacs", "kept_tokens")},
                }
            )
        secs = time_callables({"dense": dense, **models}, x, warmup=2, repeats=bench_repeats)
        for row in rows[-len(methods) :]:
            row["img_per_s"] = x.shape[0] / secs[row["method"]]
            row["speedup"] = secs["dense"] / secs[row["method"]]
        dense_ips.append(x.shape[0] / secs["dense"])
    summary = {
        "dense": {"top1": dense_result["top1"], "gmacs": dense_result["gmacs"], "img_per_s": median(dense_ips)},
        "rows": rows,
        "budgets": list(budgets),
        "methods": list(methods),
        "labels": {m: get_method(m).label for m in methods},
        "recipe": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("progress", "resume", "out_dir")},
        "provenance": provenance(),
        "bench": {"batch_size": x.shape[0], "repeats": bench_repeats, "threads": torch.get_num_threads()},
    }
    atomic_write_text(out / "compare.json", json.dumps(summary, indent=2))
    save_tradeoff_plots(summary, out)
    write_comparison_markdown(summary, out / "compare.md")
    return summary
