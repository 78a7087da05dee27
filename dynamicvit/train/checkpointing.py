"""Checkpointing and exact resume of a :class:`~dynamicvit.train.trainer.Trainer`: what a checkpoint holds
(model, optimiser, scheduler, scaler, EMA, counters, every rank's random state, the config), atomic saves,
and loading one back."""

from __future__ import annotations

from pathlib import Path

from dynamicvit.config import check_resumable
from dynamicvit.core.files import atomic_save
from dynamicvit.train.distributed import gather_objects, rng_state, seed_all, set_rng_state
from dynamicvit.weights.checkpoint import load_checkpoint, read_checkpoint, read_state_dict

__all__ = ["Checkpointing"]


class Checkpointing:
    """Mixed into the trainer: ``state_dict()`` is what a checkpoint saves, ``save()`` writes it (rank 0,
    atomically), ``load()`` continues from one. Needs the trainer's model, optimiser, scheduler, scaler, EMA,
    counters, ``folder``, ``rank``, ``world`` and ``cfg``."""

    @property
    def checkpoint_path(self) -> Path:
        return self.folder.checkpoint

    def state_dict(self) -> dict:
        ranks = self._rng_states()
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "epoch": self.epoch,
            "updates": self.updates,
            "skipped_steps": self.skipped_steps,
            "rng": ranks[0],  # rank 0's, as single-process checkpoints have always held
            "rng_ranks": ranks,
            "config": self.cfg.to_dict(),
            "record": self._last_record,  # the epoch's training figures, in case validation is cut short
        }

    def _rng_states(self) -> list[dict]:
        """Every rank's random state (a collective: all ranks must call it)."""
        return gather_objects(rng_state())

    def save(self, path: Path | None = None) -> None:
        state = self.state_dict()  # on every rank: it gathers the ranks' random states
        if self.rank == 0:
            atomic_save(state, path or self.checkpoint_path)

    def load(self, source: Path | dict | None = None) -> None:
        """Continue from a training checkpoint (a path, or what :func:`read_checkpoint` returned)."""
        path = self.checkpoint_path if source is None or isinstance(source, dict) else source
        state = source if isinstance(source, dict) else read_checkpoint(path)
        check_resumable(state, self.cfg, path)
        load_checkpoint(self.model, read_state_dict(state))
        self.optimizer.load_state_dict(state["optimizer"])
        ranks = state.get("rng_ranks") or [state["rng"]]  # each saving process's random state
        if state["config"].get("epochs") == self.cfg.schedule.epochs and len(ranks) == self.world:
            # otherwise the new plan stands (re-planned for more epochs or another number of processes)
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.updates = state["epoch"], state["updates"]
        self.skipped_steps = state.get("skipped_steps", 0)
        if len(ranks) != self.world:
            self._rescale(state, len(ranks))
        if self.rank < len(ranks):
            set_rng_state(ranks[self.rank])
        else:  # a process the saved run did not have: its own stream from the seed
            seed_all(self.cfg.run.seed + self.rank + 100_003 * self.epoch)
        unvalidated = False
        if self.rank == 0:
            validated = self.folder.truncate_logs(self.epoch)
            unvalidated = bool(self.epoch and self.epoch not in validated and state.get("record"))
        if gather_objects(unvalidated)[0]:  # killed between the checkpoint and its validation
            self._validate_and_log(state["record"])

    def _rescale(self, state: dict, saved_world: int) -> None:
        """Continue a run saved by ``saved_world`` processes with this run's number: the global batch and the
        updates per epoch change, so the schedule is re-planned from the saved epoch on (say so)."""
        before = state["updates"] // state["epoch"] if state["epoch"] else None
        self.updates = self.epoch * self.updates_per_epoch  # the scheduler was planned for this run's updates
        if self.rank == 0:
            batch = self.cfg.schedule.batch_size * self.cfg.schedule.accum_steps
            print(
                f"resuming a run of {saved_world} processes with {self.world}: global batch {batch * saved_world} -> "
                f"{batch * self.world}, updates per epoch {before} -> {self.updates_per_epoch}; the learning-rate "
                f"schedule is re-planned from epoch {self.epoch}"
                + (f"; processes {saved_world}.. draw new random streams" if self.world > saved_world else ""),
                flush=True,
            )
