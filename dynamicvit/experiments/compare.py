"""Token-reduction methods side by side at matched MACs: accuracy over seeds, MACs, measured img/s.

For each budget (a fraction of the dense model's MACs) every method's knob is tuned with
:func:`dynamicvit.methods.set_budget`, in one or two *regimes*:

* ``frozen`` – the backbone stays as trained; only a method's own parameters learn (DynamicViT's
  predictors, DiffRate's rates), the training-free methods run on the dense weights;
* ``finetune`` – every method is fine-tuned with the same engine and recipe (``RunConfig``).

A trained row is trained once per seed (the seed sets initialisation and data order) and reports
the mean and standard deviation of top-1 over them; a training-free row is deterministic and
evaluated once. Throughput is measured in one process at the benchmark batch and at batch 1, all
methods of a budget and the dense model interleaved.
"""

from __future__ import annotations

import copy
import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dynamicvit.bench.timing import time_callables
from dynamicvit.builder import build_dense_for_data, build_run_dataset, configure_reducer
from dynamicvit.config import FORMER_KEYS, REGIMES, RunConfig, default_regime, regime_config, validate
from dynamicvit.core.files import atomic_write_text, folder_lock
from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.keep import DEFAULT_MASK_RULE
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.report import save_tradeoff_plots, write_comparison_markdown
from dynamicvit.experiments.rows import RowStore
from dynamicvit.methods.budget import knob_of, set_budget
from dynamicvit.methods.registry import METHODS, apply_method, get_method
from dynamicvit.models.merged_drops import merges_drops
from dynamicvit.models.vit import has_attention_prior
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train.run_folder import check_report_folder
from dynamicvit.train.trainer import Trainer

__all__ = ["fine_tune", "run_compare", "trains"]


OUTPUTS = ("compare.json", "compare.md", "acc_vs_gmacs.png", "acc_vs_img_per_s.png", "rows", "recipe.json")


def trains(method: str, cfg: RunConfig) -> bool:
    """Whether ``method`` is trained under the recipe ``cfg``: always when it has parameters of its own,
    otherwise only when the recipe updates the backbone (``freeze_backbone_epochs < epochs``)."""
    return get_method(method).learned or cfg.schedule.freeze_backbone_epochs < cfg.schedule.epochs


def _check_args(cfg: RunConfig, budgets, methods, regimes, seeds, bench_batch: int, bench_repeats: int) -> None:
    """Every argument checked before any work (the dense model's evaluation included)."""
    validate(cfg)
    if not (cfg.model.pretrained or cfg.model.teacher_checkpoint):
        raise ValueError("compare needs the trained dense model: pass --teacher-checkpoint PATH or --pretrained")
    for method in methods:
        get_method(method)
    bad = [b for b in budgets if not 0 < b <= 1]
    if bad or not budgets:
        raise ValueError(f"--budgets must be fractions of the dense MACs in (0, 1], got {list(budgets)}")
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or not regimes:
        raise ValueError(f"--regime must be among {', '.join(REGIMES)}, got {list(regimes)}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must name distinct seeds, got {list(seeds)}")
    for flag, value in (("--bench-batch", bench_batch), ("--bench-repeats", bench_repeats)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")


def method_config(cfg: RunConfig, method: str, model: nn.Module) -> RunConfig:
    """``cfg`` for ``method`` on ``model`` (reduced by it): DynamicViT's options (mask rule, merged drops,
    attention prior) kept where the model's reducing module has them, their defaults elsewhere, so one recipe
    serves every method of a comparison."""
    reducer = find_reducer(model)
    return cfg.replace(
        dense=False,
        method=method,
        mask_rule=cfg.loss.mask_rule if get_method(method).uses_mask_rule else DEFAULT_MASK_RULE,
        merge_dropped=cfg.budget.merge_dropped and merges_drops(reducer),
        attention_prior=cfg.budget.attention_prior and has_attention_prior(reducer),
    )


def tuned_model(dense: nn.Module, method: str, cfg: RunConfig, budget: float, dense_macs: int, seed: int) -> nn.Module:
    """A copy of ``dense`` reduced by ``method`` with ``cfg``'s options (:func:`method_config`), its knob tuned to
    ``budget`` of ``dense_macs``. Merging's own small cost is reported with the row, not tuned for (merging
    methods' authors count none), so merged drops are left for training to switch on."""
    model = apply_method(copy.deepcopy(dense), method, prune_layers=cfg.budget.prune_layers, seed=seed)
    configure_reducer(model, method_config(cfg, method, model).replace(merge_dropped=False))
    set_budget(model, budget, dense_macs)
    return model


def fine_tune(cfg: RunConfig, method: str, model: nn.Module, out_dir: Path) -> nn.Module:
    """Train ``method`` at the tuned knob of ``model`` with the recipe (and the method's authors' optimisation
    settings, :meth:`~dynamicvit.core.interfaces.Method.authors_recipe`); a finished run of the same
    configuration is reused (one of another configuration is an error).

    Args:
        cfg: the shared recipe, its regime and seed set.
        method: the registered method.
        model: the dense model reduced by ``method``, its knob tuned to the budget.
        out_dir: the run folder.

    Returns:
        The trained model in eval mode.
    """
    entry = get_method(method)
    run = method_config(cfg, method, model).replace(
        **entry.authors_recipe(cfg),
        keep_rate=model.keep_rate,
        merge_r=cfg.model.merge_r if entry.knob == "keep_rate" else getattr(model, entry.knob),
        out_dir=str(out_dir),
        resume=cfg.run.resume and (out_dir / "last.pth").exists(),
    )
    with Trainer(run, reuse_finished=True) as trainer:
        trainer.fit()
    return trainer.eval_model.eval()


def run_compare(
    cfg: RunConfig,
    budgets: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9),
    methods: Sequence[str] = tuple(METHODS),
    out_dir: str = "runs/compare",
    bench_batch: int = 64,
    bench_repeats: int = 10,
    seeds: Sequence[int] | None = None,
    regimes: Sequence[str] | None = None,
) -> dict:
    """Run the comparison into ``out_dir``, held for this process while it runs.

    Each row is written to ``out_dir/rows`` the moment it is done. A folder holding an earlier comparison needs
    ``cfg.run.resume`` (finished rows read back, finished training runs reused, killed ones continued; another
    recipe is refused in one line) or ``cfg.run.overwrite`` (everything starts over).

    Args:
        cfg: the recipe (data, teacher, schedule) every trained row shares.
        budgets: fractions of the dense MACs.
        methods: registered method names.
        out_dir: the report folder (one training run per regime, method, budget and seed inside).
        bench_batch: images per timed call (the batch-1 timing runs as well).
        bench_repeats: timed rounds per batch size.
        seeds: training seeds of the trained rows (default: the recipe's).
        regimes: among :data:`REGIMES` (default: the one the recipe implies).

    Returns:
        The summary written to ``compare.json`` (also ``compare.md`` and two trade-off plots).
    """
    seeds = list(seeds) if seeds else [cfg.run.seed]
    regimes = list(regimes) if regimes else [default_regime(cfg)]
    _check_args(cfg, budgets, methods, regimes, seeds, bench_batch, bench_repeats)
    out = Path(out_dir)
    with folder_lock(out):
        check_report_folder(out, OUTPUTS, cfg.run.resume, cfg.run.overwrite)
        recipe = {**_recipe(cfg), "seeds": seeds}  # checked before any work
        store = RowStore(out, recipe, start_over=cfg.run.overwrite, renamed=FORMER_KEYS)
        return _run(cfg, list(budgets), list(methods), regimes, seeds, store, bench_batch, bench_repeats)


def _row(cfg: RunConfig, spot: tuple[str, float, str], dense: nn.Module, dense_macs: int, seeds, test_set, out: Path):
    """One method at one budget in one regime (``spot``): tuned, trained per seed when it trains, evaluated.
    Returns the row and the model to time (the first seed's)."""
    regime, budget, method = spot
    trained = trains(method, cfg)
    results, timed = [], None
    for seed in seeds if trained else [None]:
        run = _model(cfg, spot, dense, dense_macs, seed, out)
        results.append(evaluate(run, test_set, cfg))
        timed = timed or run
    top1 = [r["top1"] for r in results]
    row = {
        "regime": regime,
        "budget": budget,
        "method": method,
        "trained": trained,
        "seeds": seeds if trained else [],
        "top1": statistics.fmean(top1),
        "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
        "top1_runs": top1,
        "macs_fraction": results[0]["gmacs"] * 1e9 / dense_macs,  # of the model evaluated (a merge adds a little)
        "knob": knob_of(timed),
        **{k: results[0][k] for k in ("gmacs", "kept_tokens")},
    }
    return row, timed


def _model(cfg: RunConfig, spot: tuple[str, float, str], dense: nn.Module, dense_macs: int, seed, out: Path):
    """The model of one seed of a row: ``dense`` reduced and tuned to the budget, then trained when the method
    trains (a finished training run in ``out`` is reused, so a rerun rebuilds a finished row's model cheaply)."""
    regime, budget, method = spot
    model = tuned_model(dense, method, cfg, budget, dense_macs, cfg.run.seed)
    if seed is None:
        return model
    return fine_tune(cfg.replace(seed=seed), method, model, out / regime / f"{method}_{budget:g}_s{seed}")


def _stored_row(store: RowStore, cfg: RunConfig, spot, dense: nn.Module, dense_macs: int, seeds, test_set, out):
    """:func:`_row`, written to ``store`` the moment it is done; a row already there is read back (not evaluated
    again) with its first seed's model rebuilt for the timing."""
    key = "_".join(f"{part:g}" if isinstance(part, float) else part for part in spot)
    if store.has(key):
        row = store.read(key)
        return row, _model(cfg, spot, dense, dense_macs, seeds[0] if row["trained"] else None, out)
    row, model = _row(cfg, spot, dense, dense_macs, seeds, test_set, out)
    store.write(key, row)
    return row, model


def _recipe(cfg: RunConfig) -> dict:
    """What every row of a comparison shares: the configuration without where and how it runs."""
    return {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "resume", "overwrite", "out_dir")}


def _time(rows: list[dict], models: dict[str, nn.Module], dense: nn.Module, x: torch.Tensor, repeats: int) -> dict:
    """img/s of every model at the benchmark batch and at batch 1, interleaved with the dense model's;
    fills the rows' ``img_per_s``, ``img_per_s_b1`` and ``speedup``; returns the dense model's img/s."""
    fns = {"dense": dense, **models}
    secs = time_callables(fns, x, warmup=2, repeats=repeats)
    secs_b1 = time_callables(fns, x[:1], warmup=2, repeats=repeats)
    for row in rows:
        row["img_per_s"] = x.shape[0] / secs[row["method"]]
        row["img_per_s_b1"] = 1 / secs_b1[row["method"]]
        row["speedup"] = secs["dense"] / secs[row["method"]]
    return {"batch": x.shape[0] / secs["dense"], "batch1": 1 / secs_b1["dense"]}


def _run(cfg: RunConfig, budgets, methods, regimes, seeds, store: RowStore, bench_batch: int, bench_repeats: int):
    """Every method at every budget in every regime, each row kept in ``store``; then the report."""
    out = store.folder
    test_set = build_run_dataset(cfg, "test")
    dense = build_dense_for_data(cfg, test_set, pretrained=cfg.model.pretrained).eval()
    x = torch.stack([test_set[i][0] for i in range(min(bench_batch, len(test_set)))])
    dense_result, dense_macs = evaluate(dense, test_set, cfg), count_flops(dense).total
    rows, dense_speed = [], []
    for regime in regimes:
        rcfg = regime_config(cfg, regime)
        for budget in budgets:
            block = [
                _stored_row(store, rcfg, (regime, budget, m), dense, dense_macs, seeds, test_set, out) for m in methods
            ]
            rows += [r for r, _ in block]
            dense_speed.append(
                _time([r for r, _ in block], {r["method"]: m for r, m in block}, dense, x, bench_repeats)
            )
    summary = {
        "dense": {
            "top1": dense_result["top1"],
            "gmacs": dense_result["gmacs"],
            "img_per_s": statistics.median(s["batch"] for s in dense_speed),
            "img_per_s_b1": statistics.median(s["batch1"] for s in dense_speed),
        },
        "rows": rows,
        "budgets": budgets,
        "methods": methods,
        "regimes": regimes,
        "seeds": seeds,
        "labels": {m: get_method(m).label for m in methods},
        "recipe": _recipe(cfg),
        "provenance": provenance(),
        "bench": {"batch_size": x.shape[0], "repeats": bench_repeats, "threads": torch.get_num_threads()},
    }
    atomic_write_text(out / "compare.json", json.dumps(summary, indent=2))
    save_tradeoff_plots(summary, out)
    write_comparison_markdown(summary, out / "compare.md")
    return summary
