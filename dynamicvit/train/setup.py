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
            self.train_set, cfg.batch_size, self.rank, self.world, cfg.workers, cfg.seed, self.device
        )
        if len(self.loader) < cfg.accum_steps:
            raise ValueError(
                f"{len(self.train_set)} training images are fewer than one optimiser step of "
                f"{cfg.batch_size} x {self.world} processes x {cfg.accum_steps} accumulation steps"
            )

    def _build_models(self) -> None:
        """The model to train and its frozen teacher, on the run's device; the config's family defaults."""
        cfg = self.cfg
        self.model, self.teacher = build_teacher_student(cfg, self.train_set)
        self.task = get_task(cfg.task)
        # what --freeze-backbone-epochs freezes: the trainable weights that sparsification did not add
        self.backbone_params = [] if cfg.dense else backbone_weights(self.model)
        self._frozen = False
        memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = self.model.to(self.device, memory_format=memory)
        if self.teacher is not None:
            self.teacher = self.teacher.to(self.device, memory_format=memory).eval()
        self.cfg = with_family_defaults(cfg, self.model)

    def _build_optimisation(self) -> None:
        """timm's AdamW, cosine schedule (per update), mixup, the objective, EMA, the fp16 scaler and DDP."""
        cfg = self.cfg
        self.optimizer = create_optimizer_v2(
            param_groups(self.model, cfg), opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched="cosine",
            num_epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
            min_lr=cfg.min_lr,
            warmup_lr=cfg.min_lr,
            updates_per_epoch=self.updates_per_epoch,
            step_on_epochs=False,
        )
        self.mixup = None
        if cfg.mixup > 0 or cfg.cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=cfg.mixup,
                cutmix_alpha=cfg.cutmix,
                label_smoothing=cfg.smoothing,
                num_classes=self.train_set.num_classes,
            )
        self.base_criterion = self._base_criterion()
        self.criterion = None if cfg.dense else self._distillation()
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.ema_decay else None
        use_scaler = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.ddp = DistributedDataParallel(self.model) if self.world > 1 else self.model
        if cfg.compile:  # the compiled module shares the weights; checkpoints keep saving self.model's
            self.ddp = torch.compile(self.ddp)
        if self.rank == 0 and cfg.progress:
            batch = cfg.batch_size * self.world * cfg.accum_steps
            backbone = "" if cfg.dense else f" (backbone x{cfg.backbone_lr_scale:g})"
            print(
                f"global batch {batch} ({cfg.batch_size} x {self.world} processes x {cfg.accum_steps} accumulation "
                f"steps), peak lr {cfg.lr:g}{backbone}, {self.updates_per_epoch} updates per epoch on "
                f"{self.device.type}",
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
        return LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing > 0 else nn.CrossEntropyLoss()

    def _distillation(self) -> nn.Module:
        """DynamicViT's objective around the base one (keep-ratio, distillation terms)."""
        cfg = self.cfg
        return build_criterion(
            self.model,
            self.teacher,
            self.base_criterion,
            learned=get_method(cfg.method).learned,
            ratio_weight=cfg.ratio_weight,
            distill_weight=cfg.distill_weight,
            token_weight=cfg.token_weight,
            ratio_loss=cfg.ratio_loss,
            labels=not cfg.no_labels,
        )
