"""The trainer: distillation fine-tuning (DynamicViT, arXiv 2106.02034) or dense training, one
process or many (``torchrun``), with atomic per-epoch checkpoints and exact resume.

Built from timm's pieces: ``create_optimizer_v2`` (AdamW), ``create_scheduler_v2`` (cosine with
warm-up, stepped per update), ``Mixup``/``SoftTargetCrossEntropy``, ``ModelEmaV3``. The data, the
models and the objective come from :mod:`dynamicvit.builder`, :mod:`dynamicvit.train.build` and
:mod:`dynamicvit.core.losses`.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import time
import weakref

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from dynamicvit.config import RESUMABLE_CHANGES, RunConfig, check_resumable, validate
from dynamicvit.core.errors import TrainingError
from dynamicvit.core.files import atomic_save, fault_point, folder_lock
from dynamicvit.core.interfaces import FAMILY_DEFAULTED
from dynamicvit.data.skipping import skipped_records
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train.checkpointing import Checkpointing
from dynamicvit.train.distributed import (
    combine_results,
    dist_info,
    eval_shard,
    gather_objects,
    ranks_in_sync,
    run_device,
    seed_all,
)
from dynamicvit.train.run_folder import RUN_FILES, RunFolder
from dynamicvit.train.setup import RunSetup

__all__ = ["RESUMABLE_CHANGES", "RUN_FILES", "Trainer", "TrainingError", "check_resumable", "train"]


class Trainer(Checkpointing, RunSetup):
    """One training run; ``fit()`` trains (resuming if asked), ``state_dict()`` is what a checkpoint saves."""

    def __init__(self, cfg: RunConfig, reuse_finished: bool = False) -> None:
        """Check the config, take the run folder's lock (held until :meth:`close`; a folder another live
        process holds is an error) and check the folder, then build data, models, optimiser, scheduler,
        objective and EMA; with ``cfg.run.resume`` load the run's checkpoint (whose saved config must
        match, see :data:`RESUMABLE_CHANGES`). A finished run is an error unless ``reuse_finished``."""
        validate(cfg)
        self.cfg = cfg
        self.rank, self.world, _ = dist_info()  # selects this process's GPU before the group exists
        self.device = run_device()
        self.folder = RunFolder(cfg.run.out_dir, self.rank)
        self.out_dir = self.folder.path
        self._hold = contextlib.ExitStack()  # the run folder's lock, released by close()
        weakref.finalize(self, self._hold.close)
        if self.rank == 0:
            self._hold.enter_context(folder_lock(cfg.run.out_dir))
        try:
            self._set_up(reuse_finished)
        except BaseException:
            self._hold.close()
            raise

    def _set_up(self, reuse_finished: bool) -> None:
        held = self.folder.held()
        resume_state = self._resume_state(self.folder.check(self.cfg), reuse_finished)
        if self.cfg.run.deterministic:
            torch.use_deterministic_algorithms(True)
        seed_all(self.cfg.run.seed + self.rank)
        self._build_data()
        self._build_models()
        self._build_optimisation()
        self.epoch, self.updates, self.skipped_steps = 0, 0, 0
        self._last_record: dict = {}
        if resume_state is not None:
            self.load(resume_state)
        self.folder.claim(self.cfg.run.overwrite, held)

    def close(self) -> None:
        """Release the run folder (another run may use it from now on)."""
        self._hold.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _resume_state(self, state: dict | None, reuse_finished: bool) -> dict | None:
        """The checkpoint to resume from; family-defaulted fields left unset take its saved values. A
        finished run is refused unless ``reuse_finished``."""
        if state is None:
            return None
        saved, cfg = state["config"], self.cfg
        unset = {k: saved[k] for k in FAMILY_DEFAULTED if cfg.get(k) is None and k in saved}
        self.cfg = cfg.replace(**unset)
        if state["epoch"] >= self.cfg.schedule.epochs and not reuse_finished:
            raise ValueError(
                f"the run in {self.out_dir} already finished its {state['epoch']} epochs; "
                "pass a larger --epochs to train it further"
            )
        return state

    def _validate_and_log(self, record: dict) -> dict:
        """Validate the model after an epoch and (rank 0) log ``record`` with the results. Called on every
        rank: for a task whose metrics add up over images (classification) each rank evaluates its own part of
        the validation set and the parts are combined; other tasks are evaluated on rank 0 alone."""
        sharded = self.world > 1 and self.task.shards_evaluation
        if sharded or self.rank == 0:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                # leaves the training RNG alone; an encoder is scored by k-NN against training images
                val_set = eval_shard(self.val_set, self.rank, self.world) if sharded else self.val_set
                result = evaluate(self.eval_model, val_set, self.cfg, reference=self.train_set)
            if sharded:
                result = combine_results(gather_objects(result))
            record = {**record, **{f"val_{k}": v for k, v in result.items()}}
        if self.rank == 0:
            self.folder.append("metrics.jsonl", [record])
            if self.cfg.run.progress:
                print(_summary(record), flush=True)
        return record

    # -- training ----------------------------------------------------------------------------
    def _autocast(self):
        if not self.cfg.run.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).float().reshape(1)
        if self.world > 1:  # every rank must skip together or DDP would hang
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    @property
    def updates_per_epoch(self) -> int:
        """Optimiser steps per epoch: the loader's batches over ``accum_steps`` (a partial group is dropped)."""
        return len(self.loader) // self.cfg.schedule.accum_steps

    def train_one_epoch(self) -> dict:
        """One pass over the training data; the epoch's mean loss terms, speed and learning rate. With
        ``accum_steps`` N the gradients of N batches are summed (each loss divided by N, DDP synchronising the
        last only) before one optimiser step."""
        cfg, accum = self.cfg, self.cfg.schedule.accum_steps
        self.model.train()
        if self.criterion is not None:
            self.criterion.train()
        self.loader.set_epoch(self.epoch)
        frozen_until = (
            0 if cfg.model.dense else cfg.schedule.freeze_backbone_epochs * self.updates_per_epoch
        )  # in updates
        meter, skipped_before = _Meter(self.world), skipped_records(self.train_set)
        bad_in_row, group_ok = 0, True
        batches = itertools.islice(self.loader, self.updates_per_epoch * accum)
        bar = tqdm(
            batches,
            total=self.updates_per_epoch * accum,
            desc=f"epoch {self.epoch + 1}/{cfg.schedule.epochs}",
            disable=not cfg.run.progress or self.rank,
            dynamic_ncols=True,
            leave=False,
        )
        for i, (x, y) in enumerate(bar):
            frozen = self.updates < frozen_until
            if i % accum == 0:
                self._freeze_backbone(frozen)
                self._explore(frozen)
                self.optimizer.zero_grad(set_to_none=True)
                group_ok = True
            last = (i + 1) % accum == 0
            group_ok = group_ok and self._accumulate(x, y, last, meter)
            if last and group_ok:
                bad_in_row = 0
                self._step(frozen)
                if self.updates % 10 == 0:
                    meter.log({"update": self.updates, "epoch": self.epoch + 1, "lr": self._lr()})
            elif last:
                bad_in_row = self._skip_step(bad_in_row + 1)
            bar.set_postfix(meter.postfix(self._lr()))
        if self.rank == 0 and meter.steps:
            self.folder.append("steps.jsonl", meter.steps)
        skipped = self._sum_over_ranks(skipped_records(self.train_set) - skipped_before)
        return meter.summary() | {"skipped_steps": self.skipped_steps, "skipped_records": skipped, "lr": self._lr()}

    def _accumulate(self, x: torch.Tensor, y, last: bool, meter: _Meter) -> bool:
        """Forward and backward of one batch, its gradients added to the group's (DDP synchronises on the
        ``last`` batch of a group only); ``False`` when the loss was not finite on some rank (the group's
        gradients are dropped on every rank)."""
        x = x.to(self.device, non_blocking=True)
        if self.cfg.run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.task.batch_to(y, self.device)
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        no_sync = self.ddp.no_sync() if self.world > 1 and not last else contextlib.nullcontext()
        with no_sync:
            loss, terms = self._objective(x, y)
            if not self._all_finite(loss):
                self.optimizer.zero_grad(set_to_none=True)
                return False
            scaled = loss / self.cfg.schedule.accum_steps
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        meter.add(terms, x.shape[0])
        return True

    def _sum_over_ranks(self, value: int) -> int:
        return sum(gather_objects(value))

    def _skip_step(self, bad_in_row: int) -> int:
        """Count a step skipped for a non-finite loss; stop the run after ``max_bad_steps`` in a row."""
        self.skipped_steps += 1
        if bad_in_row >= self.cfg.run.max_bad_steps:
            raise TrainingError(
                f"loss was non-finite for {bad_in_row} steps in a row (epoch {self.epoch + 1}); stopped. "
                f"The last good checkpoint is {self.checkpoint_path}; lower --lr or enable --clip-grad."
            )
        return bad_in_row

    def _step(self, backbone_frozen: bool) -> None:
        """One optimiser update from the accumulated gradients, then the schedule and the EMA weights follow it."""
        self._apply_gradients(backbone_frozen)
        self.updates += 1
        fault_point("update")
        self.scheduler.step_update(self.updates)
        if self.ema is not None:
            self.ema.update(self.model, step=self.updates)

    def _lr(self) -> float:
        return max(g["lr"] for g in self.optimizer.param_groups)

    def _objective(self, x: torch.Tensor, y) -> tuple[torch.Tensor, dict]:
        """The batch's loss and its named terms: the base objective (dense) or the distillation one."""
        given = self.task.forward_kwargs(y)
        with self._autocast():
            if self.cfg.model.dense:
                loss = self.base_criterion(self.ddp(x, **given), y)
                return loss, {"loss": loss.detach()}
            teacher = self.criterion.teacher_outputs(x)  # before the student: a lower peak memory
            return self.criterion(x, self.ddp(x, return_decisions=True, **given), y, teacher)

    def _apply_gradients(self, frozen: bool) -> None:
        """One optimiser step (unscaled, clipped; no gradient for a ``frozen`` backbone)."""
        cfg, model = self.cfg, self.model
        if frozen:
            for p in self.backbone_params:
                p.grad = None
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if cfg.schedule.clip_grad:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.schedule.clip_grad)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _explore(self, frozen: bool) -> None:
        """With ``mask_noise="frozen"``, the mask rule explores only while the backbone is frozen: once the
        backbone trains, it trains on the tokens inference keeps (the top-k rule without its noise)."""
        if self.cfg.loss.mask_noise == "frozen" and self.reducer is not None:
            self.reducer.explore = frozen

    def _freeze_backbone(self, frozen: bool) -> None:
        """While the backbone is frozen, one process computes no gradients for it (its weights need none;
        the new modules' gradients are unchanged), which saves most of the backward through the blocks.
        DDP registers its gradient hooks once, so several processes keep them and drop the gradients."""
        if self.world == 1 and frozen != self._frozen:
            for p in self.backbone_params:
                p.requires_grad_(not frozen)
            self._frozen = frozen

    def fit(self, until_epoch: int | None = None) -> dict:
        """Train to ``until_epoch`` (default: all epochs). Each epoch is checkpointed first, then
        validated and logged, so a failure in validation never loses the epoch."""
        cfg = self.cfg
        self.scheduler.step_update(self.updates)
        record: dict = {}
        stop = min(until_epoch or cfg.schedule.epochs, cfg.schedule.epochs)
        try:
            while self.epoch < stop:
                record = self._last_record = {"epoch": self.epoch + 1, **self.train_one_epoch()}
                self.epoch += 1
                self.save()
                record = self._validate_and_log(record)
                if self.world > 1:
                    dist.barrier()
        except KeyboardInterrupt:
            if self.rank == 0:
                atomic_save(
                    {
                        "model": self.model.state_dict(),
                        "epoch": self.epoch,
                        "config": cfg.to_dict(),
                        "interrupted": True,
                    },
                    self.out_dir / "interrupted.pth",
                )
                print(
                    f"\ninterrupted: weights in {self.out_dir / 'interrupted.pth'}; resume with --resume "
                    f"from {self.checkpoint_path} (epoch {self.epoch})",
                    flush=True,
                )
            raise
        finally:
            self._freeze_backbone(False)  # the model leaves fit() as it came, every weight trainable
        if self.world > 1:
            record["ranks_in_sync"] = ranks_in_sync(self.model)
        return record

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def _summary(record: dict) -> str:
    """The epoch's line: loss, top-1, GMACs, speed, and the unreadable records skipped if there were any."""
    keys = ("train_loss", "val_top1", "val_gmacs", "train_img_per_s")
    line = f"epoch {record['epoch']}: " + ", ".join(f"{k} {record[k]:.4g}" for k in keys if record.get(k) is not None)
    skipped = record.get("skipped_records")
    return line + (f", {skipped} unreadable records skipped" if skipped else "")


def train(cfg: RunConfig) -> dict:
    """Run a whole training (the Python call behind ``dynamicvit train``); returns the last record. Under
    ``torchrun`` the process group is destroyed at the end: left to interpreter exit, gloo's threads can
    abort the process ("terminate called without an active exception")."""
    try:
        with Trainer(cfg) as trainer:
            return trainer.fit()
    finally:
        _leave_group(failed=sys.exc_info()[0] is not None)


def _leave_group(failed: bool) -> None:
    """Destroy the process group, except after a failure under NCCL: the failed rank then just exits and
    torchrun stops every other rank at once, where NCCL's shutdown could wait on ranks blocked in a collective."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if failed and dist.get_backend() == "nccl":
        return
    dist.destroy_process_group()


class _Meter:
    """An epoch's running means of the loss terms (per image), its speed and its logged steps."""

    def __init__(self, world: int) -> None:
        self.world, self.seen, self.start = world, 0, time.perf_counter()
        self.sums: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.steps: list[dict] = []

    def add(self, terms: dict, images: int) -> None:
        self.last = {k: float(v) for k, v in terms.items()}
        self.seen += images
        for k, v in self.last.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * images

    def log(self, step: dict) -> None:
        """Keep ``step`` with the last batch's loss terms (written to steps.jsonl at the epoch's end)."""
        self.steps.append(step | self.last)

    def postfix(self, lr: float) -> dict:
        speed = self.seen * self.world / max(time.perf_counter() - self.start, 1e-9)
        return {k: f"{v / max(self.seen, 1):.3f}" for k, v in self.sums.items()} | {
            "lr": f"{lr:.1e}",
            "img/s": f"{speed:.0f}",
        }

    def summary(self) -> dict:
        elapsed = time.perf_counter() - self.start
        out = {f"train_{k}": v / max(self.seen, 1) for k, v in self.sums.items()}
        return out | {"train_img_per_s": self.seen * self.world / elapsed, "train_seconds": elapsed}
