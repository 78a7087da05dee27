"""What a run builds before its first step, mixed into the :class:`~dynamicvit.train.trainer.Trainer`: its
data sets and loader, the model to train and its teacher, and timm's optimiser, schedule, mixup, EMA and the
objective."""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dynamicvit.builder import build_run_dataset
from dynamicvit.config import with_family_defaults
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.losses import build_criterion
from dynamicvit.methods.registry import get_method
from dynamicvit.tasks.registry import get_task
from dynamicvit.train.build import build_teacher_student, param_groups
from dynamicvit.train.loaders import EpochLoader
from dynamicvit.weights.checkpoint import backbone_weights

__all__ = ["RunSetup"]


class RunSetup:
    """The trainer's building steps; they read ``cfg``, ``rank``, ``world``, ``device`` and
    ``updates_per_epoch`` of the trainer and set its data, models and optimisation attributes."""

    def _build_data(self) -> None:
        """The training and validation sets, the training set's sampler (sharded across ranks) and loader."""
        cfg = self.cfg
        self.train_set = build_run_dataset(cfg, "train")
        self.val_set = build_run_dataset(cfg, "test")
        self.loader = EpochLoader(
            self.train_set, cfg.schedule.batch_size, self.rank, self.world, cfg.run.workers, cfg.run.seed, self.device
        )
        if len(self.loader) < cfg.schedule.accum_steps:
            raise ValueError(
                f"{len(self.train_set)} training images are fewer than one optimiser step of "
                f"{cfg.schedule.batch_size} x {self.world} processes x {cfg.schedule.accum_steps} accumulation steps"
            )

    def _build_models(self) -> None:
        """The model to train and its frozen teacher, on the run's device; the config's family defaults."""
        cfg = self.cfg
        self.model, self.teacher = build_teacher_student(cfg, self.train_set)
        self.task = get_task(cfg.model.task)
        self.reducer = find_reducer(self.model)  # the student's reducing module (None for a dense run)
        # what --freeze-backbone-epochs freezes: the trainable weights that sparsification did not add
        self.backbone_params = [] if cfg.model.dense else backbone_weights(self.model)
        self._frozen = False
        memory = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device, memory_format=memory)
        if self.teacher is not None:
            self.teacher = self.teacher.to(self.device, memory_format=memory).eval()
        self.cfg = with_family_defaults(cfg, self.model)

    def _build_optimisation(self) -> None:
        """timm's AdamW, cosine schedule (per update), mixup, the objective, EMA, the fp16 scaler and DDP."""
        cfg = self.cfg
        self.optimizer = create_optimizer_v2(
            param_groups(self.model, cfg), opt="adamw", lr=cfg.schedule.lr, weight_decay=cfg.schedule.weight_decay
        )
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched="cosine",
            num_epochs=cfg.schedule.epochs,
            warmup_epochs=cfg.schedule.warmup_epochs,
            min_lr=cfg.schedule.min_lr,
            warmup_lr=cfg.schedule.min_lr,
            updates_per_epoch=self.updates_per_epoch,
            step_on_epochs=False,
        )
        self.mixup = None
        if cfg.augment.mixup > 0 or cfg.augment.cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=cfg.augment.mixup,
                cutmix_alpha=cfg.augment.cutmix,
                label_smoothing=cfg.augment.smoothing,
                num_classes=self.train_set.num_classes,
            )
        self.base_criterion = self._base_criterion()
        self.criterion = None if cfg.model.dense else self._distillation()
        self.ema = ModelEmaV3(self.model, decay=cfg.schedule.ema_decay) if cfg.schedule.ema_decay else None
        use_scaler = cfg.run.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.ddp = DistributedDataParallel(self.model) if self.world > 1 else self.model
        if cfg.run.compile:  # the compiled module shares the weights; checkpoints keep saving self.model's
            self.ddp = torch.compile(self.ddp)
        if self.rank == 0 and cfg.run.progress:
            batch = cfg.schedule.batch_size * self.world * cfg.schedule.accum_steps
            backbone = "" if cfg.model.dense else f" (backbone x{cfg.schedule.backbone_lr_scale:g})"
            print(
                f"global batch {batch} ({cfg.schedule.batch_size} x {self.world} processes x "
                f"{cfg.schedule.accum_steps} accumulation steps), peak lr {cfg.schedule.lr:g}{backbone}, "
                f"{self.updates_per_epoch} updates per epoch on {self.device.type}",
                flush=True,
            )

    def _base_criterion(self) -> nn.Module:
        """The task's objective: mixed soft targets, the task's own losses, or (smoothed) cross-entropy."""
        cfg = self.cfg
        if self.mixup is not None:
            return SoftTargetCrossEntropy()
        own = self.task.base_criterion()  # e.g. a detector's: its own losses
        if own is not None:
            return own
        return LabelSmoothingCrossEntropy(cfg.augment.smoothing) if cfg.augment.smoothing > 0 else nn.CrossEntropyLoss()

    def _distillation(self) -> nn.Module:
        """DynamicViT's objective around the base one (keep-ratio, distillation terms)."""
        cfg = self.cfg
        return build_criterion(
            self.model,
            self.teacher,
            self.base_criterion,
            learned=get_method(cfg.model.method).learned,
            ratio_weight=cfg.loss.ratio_weight,
            distill_weight=cfg.loss.distill_weight,
            token_weight=cfg.loss.token_weight,
            ratio_loss=cfg.loss.ratio_loss,
            labels=not cfg.loss.no_labels,
        )
