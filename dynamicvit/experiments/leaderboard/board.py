"""Running a board: the accuracy pass (every row trained if it trains, evaluated on every test canvas, written
the moment it is done) and, apart from it, the speed pass (each block of rows timed against the dense model
with nothing else running).

A row is an entry (a method or a DynamicViT variant) at a budget, in a regime, with a seed where it trains
or draws random numbers. Its file holds top-1, the MACs reached, the knob, the per-image correctness on the
test canvases, the training seconds and, for DiffRate, the searched counts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dynamicvit.bench.timing import time_callables
from dynamicvit.builder import build_dense_for_data, build_run_dataset, configure_reducer
from dynamicvit.config import FORMER_KEYS, REGIMES, RunConfig, regime_config
from dynamicvit.core.files import atomic_write_text, folder_lock
from dynamicvit.core.flops import count_flops
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.compare import fine_tune, method_config, trains, tuned_model
from dynamicvit.experiments.leaderboard.entries import FINETUNE_ONLY, Entry, default_entries, get_entry
from dynamicvit.experiments.leaderboard.proxies import Proxy, get_proxy, proxy_config, proxy_teacher
from dynamicvit.experiments.leaderboard.rows import pack_correct, row_key
from dynamicvit.experiments.report import read_jsonl
from dynamicvit.experiments.rows import RowStore
from dynamicvit.experiments.teacher import TEACHER_FILE
from dynamicvit.methods.budget import knob_of
from dynamicvit.methods.registry import apply_method, get_method
from dynamicvit.tasks.logits import evaluate_logits

__all__ = ["Board", "open_board"]

# fields that do not change what a row computes (paths, the seed each row sets, display)
RECIPE_SKIPS = ("progress", "resume", "out_dir", "seed", "overwrite", "data_dir", "teacher_checkpoint")


@dataclasses.dataclass
class Board:
    """An opened board: its proxy, shared recipe, teacher, rows and test canvases.

    Attributes:
        proxy: the proxy.
        folder: the board's folder (teacher, runs, rows, speed).
        cfg: the shared recipe of the students.
        teacher: the teacher's curve summary.
        store: the finished rows.
    """

    proxy: Proxy
    folder: Path
    cfg: RunConfig
    teacher: dict
    store: RowStore

    def dense(self) -> tuple[nn.Module, object, int]:
        """The teacher in eval mode, the test canvases and its MACs."""
        test_set = build_run_dataset(self.cfg, "test")
        dense = build_dense_for_data(self.cfg, test_set).eval()
        return dense, test_set, count_flops(dense).total

    def plan(self, regimes: Sequence[str], budgets: Sequence[float], names: Sequence[str] | None, seeds) -> list:
        """The rows to run, ``(regime, budget, entry, seed)``, in order."""
        out = []
        for regime in regimes:
            rcfg = regime_config(self.cfg, regime)
            for budget in budgets:
                for name in names or default_entries(regime, self.proxy.grid <= 6):
                    if regime == "frozen" and name in FINETUNE_ONLY:  # its frozen rows are another entry's
                        continue
                    entry = get_entry(name)
                    per_seed = trains(entry.method, rcfg) or entry.randomised
                    out += [(regime, budget, entry, seed) for seed in (seeds if per_seed else [None])]
        return out

    def run(self, regimes=REGIMES, budgets=None, names=None, seeds=(0, 1)) -> list[str]:
        """The accuracy pass: every planned row not yet finished, each written as soon as it is done.

        Returns:
            The keys of the rows this call ran.
        """
        budgets = budgets or self.proxy.budgets
        dense, test_set, dense_macs = self.dense()
        if not self.store.has("dense"):
            result, correct = _evaluate(dense, test_set, self.cfg)
            dense_row = {"entry": "dense", **result, "correct": pack_correct(correct), "provenance": provenance()}
            self.store.write("dense", dense_row)
        done = []
        for regime, budget, entry, seed in self.plan(regimes, budgets, names, seeds):
            key = row_key(regime, budget, entry.name, seed)
            if self.store.has(key):
                continue
            row = self._row(regime, budget, entry, seed, dense, dense_macs, test_set)
            self.store.write(key, {"key": key, **row, "provenance": provenance()})
            done.append(key)
        return done

    def _row(self, regime, budget, entry: Entry, seed, dense, dense_macs, test_set) -> dict:
        """One row: tuned to the budget, trained when it trains, evaluated on every test canvas."""
        cfg = regime_config(self.cfg, regime).replace(**entry.fields)
        method = get_method(entry.method)
        model = tuned_model(dense, entry.method, cfg, budget, dense_macs, seed or 0)
        knob = knob_of(model)
        trained, run, seconds = trains(entry.method, cfg), None, 0.0
        if trained:
            run = self.folder / "runs" / regime / f"{entry.name}_{budget:g}_s{seed}"
            model = fine_tune(cfg.replace(seed=seed), entry.method, model, run)
            seconds = sum(r.get("train_seconds", 0.0) for r in read_jsonl(run / "metrics.jsonl"))
        result, correct = _evaluate(model, test_set, cfg)
        return {
            "regime": regime,
            "budget": budget,
            "entry": entry.name,
            "method": entry.method,
            "seed": seed,
            "trained": trained,
            **result,
            "macs_fraction": result["gmacs"] * 1e9 / dense_macs,  # of the model evaluated (a merge adds a little)
            "knob": knob,
            "searched": method.searched(model) if trained else {},
            "train_seconds": seconds,
            "run": None if run is None else str(run.relative_to(self.folder)),
            "correct": pack_correct(correct),
        }

    def time(self, regimes=REGIMES, budgets=None, batch: int = 32, repeats: int = 10) -> dict:
        """The speed pass: each regime × budget block's entries (rebuilt at their rows' cost, :meth:`_rebuild`;
        a trained entry's first seed) timed at ``batch`` and at batch 1 with the dense model interleaved; each
        block written to ``speed.json`` when done, a finished block skipped on a rerun.

        Returns:
            The speed file's content.
        """
        budgets = budgets or self.proxy.budgets
        path = self.folder / "speed.json"
        speed = json.loads(path.read_text()) if path.exists() else {"blocks": {}}
        dense, test_set, _ = self.dense()
        x = torch.stack([test_set[i][0] for i in range(min(batch, len(test_set)))])
        rows = {r["key"]: r for r in self.store.all() if "key" in r}
        for regime in regimes:
            for budget in budgets:
                block = f"{regime}_{budget:g}"
                members = [r for r in rows.values() if (r["regime"], r["budget"]) == (regime, budget)]
                if block in speed["blocks"] or not members:
                    continue
                fns = {"dense": dense}
                for r in sorted(members, key=lambda r: (r["entry"], r["seed"] or 0)):  # an entry's first seed
                    if r["entry"] not in fns:
                        fns[r["entry"]] = self._rebuild(r, dense)
                secs = time_callables(fns, x, warmup=2, repeats=repeats)
                secs_b1 = time_callables(fns, x[:1], warmup=2, repeats=repeats)
                speed["blocks"][block] = {
                    name: {"img_per_s": len(x) / secs[name], "img_per_s_b1": 1 / secs_b1[name],
                           "speedup": secs["dense"] / secs[name], "speedup_b1": secs_b1["dense"] / secs_b1[name]}
                    for name in fns
                }  # fmt: skip
                speed.update(bench={"batch_size": len(x), "repeats": repeats, "threads": torch.get_num_threads()},
                             provenance=provenance())  # fmt: skip
                atomic_write_text(path, json.dumps(speed, indent=1))
        return speed

    def _rebuild(self, row: dict, dense: nn.Module) -> nn.Module:
        """A model that costs what ``row``'s evaluated model cost: the dense model reduced at the row's knob, with
        its entry's fields and what its method searched. The cost of a fixed-count reduction does not depend on
        the trained weights, so the speed pass needs no training run (those stay on the machine that trained)."""
        method = get_method(row["method"])
        model = apply_method(copy.deepcopy(dense), row["method"], prune_layers=self.cfg.budget.prune_layers,
                             seed=row["seed"] or 0)  # fmt: skip
        cfg = self.cfg.replace(**get_entry(row["entry"]).fields)
        configure_reducer(model, method_config(cfg, row["method"], model))
        setattr(model, method.knob, next(iter(row["knob"].values())))
        if row["searched"]:
            method.load_searched(model, row["searched"])
        return model.eval()


@torch.inference_mode()
def _evaluate(model: nn.Module, test_set, cfg: RunConfig) -> tuple[dict, np.ndarray]:
    """Top-1, GMACs and kept tokens of ``model`` with its per-image correctness."""
    correct: list[torch.Tensor] = []
    result = evaluate_logits(model, test_set, cfg, 256, None, lambda pred, y, _: correct.append((pred == y).cpu()))
    keep = ("top1", "gmacs", "images", "kept_tokens")
    return {k: result[k] for k in keep if k in result}, torch.cat(correct).numpy()


def open_board(name: str, out: str | Path = "runs/leaderboard", quick: bool = False, data_dir: str | None = None):
    """The board of the proxy ``name`` in ``out/name``: its teacher trained to convergence (or resumed, or
    reused), its folder held by this process and its recipe checked against the folder's.

    Returns:
        A context manager yielding the :class:`Board`.
    """
    proxy = get_proxy(name, quick)
    folder = Path(out) / proxy.name
    return _Opened(proxy, folder, quick, data_dir)


class _Opened:
    def __init__(self, proxy: Proxy, folder: Path, quick: bool, data_dir: str | None) -> None:
        self.args = (proxy, folder, quick, data_dir)

    def __enter__(self) -> Board:
        proxy, folder, quick, data_dir = self.args
        self._lock = folder_lock(folder / "rows")
        self._lock.__enter__()
        try:
            teacher = proxy_teacher(proxy, folder, data_dir, quick)
            cfg = proxy_config(proxy, folder / "runs", folder / "teacher" / TEACHER_FILE, data_dir, quick)
            cfg = cfg.replace(resume=True)  # a killed row's training continues from its checkpoint
            recipe = {k: v for k, v in cfg.to_dict().items() if k not in RECIPE_SKIPS}
            recipe["teacher"] = {k: teacher[k] for k in ("best_epoch", "val_top1", "epochs")}
            defaults = {k: v for k, v in RunConfig().to_dict().items() if k in recipe}
            return Board(proxy, folder, cfg, teacher, RowStore(folder, recipe, defaults, renamed=FORMER_KEYS))
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise

    def __exit__(self, *exc) -> None:
        self._lock.__exit__(*exc)
