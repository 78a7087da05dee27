"""Training and evaluation: distillation fine-tuning (SPEC §2) or dense training, one process
or many (``torchrun``), with atomic per-epoch checkpoints and exact resume.

Built from timm's pieces: ``create_optimizer_v2`` (AdamW), ``create_scheduler_v2`` (cosine with
warm-up, stepped per update), ``Mixup``/``SoftTargetCrossEntropy``, ``ModelEmaV3``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .baselines import apply_method, random_selector
from .checkpoint import (
    CheckpointError,
    atomic_save,
    infer_timm_kwargs,
    is_added_key,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
)
from .data import build_dataset
from .flops import count_flops
from .hierarchical import find_dynamic_stage, is_hierarchical
from .losses import DistillationLoss
from .models import build_timm_model
from .segment import build_segmenter, confusion_matrix, miou
from .vit import DynamicViTMixin, TokenReductionMixin

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "evaluate",
    "evaluate_checkpoint",
    "load_for_eval",
    "load_trained",
    "train",
]


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the last checkpoint is intact."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved in each checkpoint. Defaults follow SPEC §2 for plain ViTs."""

    model: str = "dvit_tiny_fmnist"  # timm name: the dense teacher and the student's backbone
    dense: bool = False  # train the dense model itself (e.g. to make a teacher offline)
    task: str = "classify"  # or "segment": FPN head on a features_only ConvNeXt/Swin, per-pixel CE, mIoU
    method: str = "dynamicvit"  # or a baseline of dynamicvit.baselines.METHODS (trained with CE + KL only)
    tome_r: int = 8  # ToMe's tokens merged per block (method "tome")
    pretrained: bool = False
    teacher_checkpoint: str | None = None
    model_kwargs: dict = field(default_factory=dict)  # extra timm kwargs, e.g. drop_path_rate
    data: str = "cluttered-fashion-mnist"
    data_dir: str | None = None
    canvas: int = 64  # cluttered-fashion-mnist canvas side
    distractors: int = 4  # cluttered-fashion-mnist fragments per canvas
    img_size: int | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    epochs: int = 30
    batch_size: int = 64  # per process
    lr: float = 1e-3
    backbone_lr_scale: float | None = None  # None: SPEC's 0.01 for ViTs, 0.2 for ConvNeXt/Swin
    freeze_backbone_epochs: float = 5  # no backbone updates before this epoch (fractions allowed)
    warmup_epochs: float = 5
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    keep_rate: float = 0.7
    prune_layers: list[int] | None = None
    ratio_weight: float | None = None  # None: SPEC's 2 for ViTs, 10 for ConvNeXt/Swin
    distill_weight: float = 0.5
    token_weight: float = 0.5  # ViTs only: hierarchical models keep no token subset to compare
    mixup: float = 0.0
    cutmix: float = 0.0
    smoothing: float = 0.0
    ema_decay: float | None = None
    clip_grad: float | None = None
    amp: bool = False
    seed: int = 0
    workers: int = 0
    out_dir: str = "runs/train"
    resume: bool = False
    max_bad_steps: int = 10
    deterministic: bool = False
    progress: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment, initialising the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dataset(cfg: TrainConfig, split: str):
    """The run's train or test set, as its config describes it."""
    return build_dataset(
        cfg.data,
        split,
        data_dir=cfg.data_dir,
        img_size=cfg.img_size or 224,
        seed=cfg.seed,
        limit=cfg.train_limit if split == "train" else cfg.val_limit,
        canvas=cfg.canvas,
        distractors=cfg.distractors,
    )


def _build_base(
    cfg: TrainConfig,
    num_classes: int,
    in_chans: int,
    input_size: tuple[int, int, int] | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """The run's dense model: a timm classifier, or for ``task="segment"`` a segmenter on a
    features_only backbone taking ``input_size`` (C, H, W) images."""
    kwargs = {"num_classes": num_classes, "in_chans": in_chans, **cfg.model_kwargs}
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    if cfg.task == "classify":
        return build_timm_model(cfg.model, pretrained=pretrained, **kwargs)
    if cfg.task != "segment":
        raise ValueError(f"task must be 'classify' or 'segment', got {cfg.task!r}")
    backbone = build_timm_model(cfg.model, pretrained=pretrained, features_only=True, **kwargs)
    if not is_hierarchical(backbone):
        raise ValueError(f"--task segment needs a ConvNeXt or Swin backbone, got {cfg.model!r}")
    return build_segmenter(backbone, num_classes, input_size)


def _build_for_data(cfg: TrainConfig, dataset, pretrained: bool = False) -> nn.Module:
    """:func:`_build_base` with classes, channels and (segmentation) input size from ``dataset``."""
    if cfg.task == "segment" and (not hasattr(dataset, "class_names") or cfg.mixup or cfg.cutmix):
        raise ValueError("--task segment needs a segmentation data set (--data cluttered-fashion-scenes), no mixup")
    size = tuple(dataset[0][0].shape) if cfg.task == "segment" else None
    return _build_base(cfg, dataset.num_classes, dataset.in_chans, size, pretrained)


def _reduce(model: nn.Module, cfg: TrainConfig) -> nn.Module:
    """The run's student: ``model`` reduced by ``cfg.method`` at ``cfg.keep_rate`` (or ToMe's r)."""
    return apply_method(model, cfg.method, keep_rate=cfg.keep_rate, prune_layers=cfg.prune_layers, r=cfg.tome_r)


def _is_backbone(name: str) -> bool:
    """Pretrained weights, as opposed to the modules sparsification adds (predictors, fast paths)."""
    return not is_added_key(name)


def _family_defaults(cfg: TrainConfig, model: nn.Module) -> TrainConfig:
    """Fill the recipe values left unset with SPEC's defaults for the model's family."""
    hierarchical = is_hierarchical(model)
    return dataclasses.replace(
        cfg,
        ratio_weight=cfg.ratio_weight if cfg.ratio_weight is not None else (10.0 if hierarchical else 2.0),
        backbone_lr_scale=cfg.backbone_lr_scale
        if cfg.backbone_lr_scale is not None
        else (0.2 if hierarchical else 0.01),
    )


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """New modules at full lr, backbone at ``backbone_lr_scale``; no weight decay on 1-d params."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        backbone = not cfg.dense and _is_backbone(name)
        no_decay = p.ndim <= 1 or name in skip
        group = groups.setdefault(
            (backbone, no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "lr_scale": cfg.backbone_lr_scale if backbone else 1.0,
            },
        )
        group["params"].append(p)
    return list(groups.values())


class Trainer:
    """One training run; ``fit()`` trains (resuming if asked), ``state_dict()`` is what a checkpoint saves."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rank, self.world, local_rank = _dist_info()
        self.device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        self.out_dir = Path(cfg.out_dir)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        _seed_all(cfg.seed + self.rank)

        self.train_set = _dataset(cfg, "train")
        self.val_set = _dataset(cfg, "test")
        if len(self.train_set) < cfg.batch_size * self.world:
            raise ValueError(f"{len(self.train_set)} training images are fewer than one global batch")
        self.sampler = DistributedSampler(
            self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
        self.loader = DataLoader(
            self.train_set, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.workers, drop_last=True
        )
        self.model, self.teacher = self._build_models()
        self.cfg = cfg = _family_defaults(cfg, self.model)
        self.optimizer = create_optimizer_v2(
            _param_groups(self.model, cfg), opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched="cosine",
            num_epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
            min_lr=cfg.min_lr,
            warmup_lr=cfg.min_lr,
            updates_per_epoch=len(self.loader),
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
            base = SoftTargetCrossEntropy()
        else:
            base = LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing > 0 else nn.CrossEntropyLoss()
        self.base_criterion = base
        hierarchical = is_hierarchical(self.model)
        self.criterion = (
            None
            if cfg.dense
            else DistillationLoss(
                self.teacher,
                keep_rate=cfg.keep_rate,
                base_criterion=base,
                ratio_weight=cfg.ratio_weight if cfg.method == "dynamicvit" else 0.0,
                distill_weight=cfg.distill_weight,
                token_weight=cfg.token_weight if cfg.method == "dynamicvit" and not hierarchical else 0.0,
                target_ratios=find_dynamic_stage(self.model).keep_ratios if hierarchical else None,
            )
        )
        self.ema = ModelEmaV3(self.model, decay=cfg.ema_decay) if cfg.ema_decay else None
        use_scaler = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.ddp = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.epoch, self.updates, self.skipped_steps = 0, 0, 0

    def _build_models(self) -> tuple[nn.Module, nn.Module | None]:
        cfg = self.cfg
        base = _build_for_data(cfg, self.train_set, pretrained=cfg.pretrained)
        if cfg.teacher_checkpoint:
            load_checkpoint(base, cfg.teacher_checkpoint)
        if cfg.dense:
            return base.to(self.device), None
        if not (cfg.pretrained or cfg.teacher_checkpoint):
            raise ValueError(
                "sparse training distils from a trained dense model: pass --pretrained or "
                "--teacher-checkpoint (make one with `dynamicvit train --dense`)"
            )
        teacher = copy.deepcopy(base)
        student = _reduce(base, cfg)
        for name in ("cls_token", "pos_embed", "dist_token", "reg_token"):
            if isinstance(getattr(student, name, None), nn.Parameter):
                getattr(student, name).requires_grad_(False)
        return student.to(self.device), teacher.to(self.device).eval()

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "last.pth"

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "epoch": self.epoch,
            "updates": self.updates,
            "skipped_steps": self.skipped_steps,
            "rng": _rng_state(),
            "config": asdict(self.cfg),
        }

    def save(self, path: Path | None = None) -> None:
        if self.rank == 0:
            atomic_save(self.state_dict(), path or self.checkpoint_path)

    def load(self, path: Path | None = None) -> None:
        path = path or self.checkpoint_path
        state = read_checkpoint(path)
        missing = {"model", "optimizer", "scheduler", "epoch", "rng"} - set(state if isinstance(state, dict) else {})
        if missing:
            raise CheckpointError(f"--resume: {path} is not a training checkpoint (no {sorted(missing)})")
        load_checkpoint(self.model, read_state_dict(state))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.updates = state["epoch"], state["updates"]
        self.skipped_steps = state.get("skipped_steps", 0)
        _set_rng_state(state["rng"])
        if self.rank:
            _seed_all(self.cfg.seed + self.rank + 1000 * self.epoch)

    # -- training ----------------------------------------------------------------------------
    def _autocast(self):
        if not self.cfg.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        flag = torch.isfinite(loss.detach()).float().reshape(1)
        if self.world > 1:  # every rank must skip together or DDP would hang
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def train_one_epoch(self) -> dict:
        cfg, model = self.cfg, self.model
        model.train()
        if self.criterion is not None:
            self.criterion.train()
        self.sampler.set_epoch(self.epoch)
        frozen_until = 0 if cfg.dense else cfg.freeze_backbone_epochs * len(self.loader)  # in updates
        backbone = [p for n, p in model.named_parameters() if _is_backbone(n) and p.requires_grad]
        sums: dict[str, float] = {}
        steps: list[dict] = []
        seen, bad_in_row, start = 0, 0, time.perf_counter()
        bar = tqdm(
            self.loader,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not cfg.progress or self.rank,
            dynamic_ncols=True,
            leave=False,
        )
        for x, y in bar:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.mixup is not None:
                x, y = self.mixup(x, y)
            with self._autocast():
                if cfg.dense:
                    loss = self.base_criterion(self.ddp(x), y)
                    terms = {"loss": loss.detach()}
                else:
                    loss, terms = self.criterion(x, self.ddp(x, return_decisions=True), y)
            self.optimizer.zero_grad(set_to_none=True)
            if not self._all_finite(loss):
                self.skipped_steps += 1
                bad_in_row += 1
                if bad_in_row >= cfg.max_bad_steps:
                    raise TrainingError(
                        f"loss was non-finite for {bad_in_row} steps in a row (epoch {self.epoch + 1}); stopped. "
                        f"The last good checkpoint is {self.checkpoint_path}; lower --lr or enable --clip-grad."
                    )
                continue
            bad_in_row = 0
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            if self.updates < frozen_until:
                for p in backbone:
                    p.grad = None
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.updates += 1
            self.scheduler.step_update(self.updates)
            if self.ema is not None:
                self.ema.update(model, step=self.updates)
            seen += x.shape[0]
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * x.shape[0]
            lr = max(g["lr"] for g in self.optimizer.param_groups)
            if self.updates % 10 == 0:
                steps.append(
                    {
                        "update": self.updates,
                        "epoch": self.epoch + 1,
                        "lr": lr,
                        **{k: float(v) for k, v in terms.items()},
                    }
                )
            bar.set_postfix(
                {k: f"{v / seen:.3f}" for k, v in sums.items()}
                | {"lr": f"{lr:.1e}", "img/s": f"{seen * self.world / (time.perf_counter() - start):.0f}"}
            )
        elapsed = time.perf_counter() - start
        if self.rank == 0 and steps:
            with open(self.out_dir / "steps.jsonl", "a") as f:
                f.writelines(json.dumps(step) + "\n" for step in steps)
        out = {f"train_{k}": v / max(seen, 1) for k, v in sums.items()}
        out.update(
            train_img_per_s=seen * self.world / elapsed,
            train_seconds=elapsed,
            skipped_steps=self.skipped_steps,
            lr=max(g["lr"] for g in self.optimizer.param_groups),
        )
        return out

    def fit(self, until_epoch: int | None = None) -> dict:
        """Train to ``until_epoch`` (default: all epochs); resume first if configured."""
        cfg = self.cfg
        if cfg.resume and self.checkpoint_path.exists():
            self.load()
        elif cfg.resume:
            raise CheckpointError(f"--resume: no checkpoint at {self.checkpoint_path}")
        if self.updates == 0:
            self.scheduler.step_update(0)
        record: dict = {}
        stop = min(until_epoch or cfg.epochs, cfg.epochs)
        try:
            while self.epoch < stop:
                record = {"epoch": self.epoch + 1, **self.train_one_epoch()}
                self.epoch += 1
                if self.rank == 0:
                    record.update({f"val_{k}": v for k, v in evaluate(self.eval_model, self.val_set, cfg).items()})
                    with open(self.out_dir / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                    self.save()
                    if cfg.progress:
                        print(_summary(record), flush=True)
                if self.world > 1:
                    dist.barrier()
        except KeyboardInterrupt:
            if self.rank == 0:
                atomic_save(
                    {"model": self.model.state_dict(), "epoch": self.epoch, "config": asdict(cfg), "interrupted": True},
                    self.out_dir / "interrupted.pth",
                )
                print(
                    f"\ninterrupted: weights in {self.out_dir / 'interrupted.pth'}; resume with --resume "
                    f"from {self.checkpoint_path} (epoch {self.epoch})",
                    flush=True,
                )
            raise
        if self.world > 1:
            record["ranks_in_sync"] = _ranks_in_sync(self.model)
        return record

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model


def _summary(record: dict) -> str:
    keys = ("train_loss", "val_top1", "val_gmacs", "train_img_per_s")
    return f"epoch {record['epoch']}: " + ", ".join(f"{k} {record[k]:.4g}" for k in keys if k in record)


def _ranks_in_sync(model: nn.Module) -> bool:
    vec = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    checksum = torch.stack([vec.sum(), (vec * vec).sum()]).cpu()
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(g, gathered[0]) for g in gathered)


@torch.inference_mode()
def evaluate(
    model: nn.Module, dataset, cfg: TrainConfig | None = None, batch_size: int = 256, decisions_fn=None
) -> dict:
    """Top-1 (%), mean loss, GMACs and img/s of ``model`` in eval mode on ``dataset``.

    ``decisions_fn(batch, num_patches, counts)`` forces per-stage kept indices (e.g. random).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=cfg.workers if cfg else 0)
    sparse = isinstance(model, DynamicViTMixin)
    if decisions_fn is not None and not sparse:
        raise ValueError("forced token selection (e.g. random tokens) applies to DynamicViT models only")
    correct = total = 0
    loss_sum, compute = 0.0, 0.0
    confusion = None
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        start = time.perf_counter()
        if sparse and decisions_fn is not None:
            n = model.patch_embed.num_patches
            logits = model(x, decisions=decisions_fn(x.shape[0], n, model.keep_counts(n)))
        else:
            logits = model(x)
        compute += time.perf_counter() - start
        loss_sum += float(nn.functional.cross_entropy(logits.float(), y, reduction="sum"))
        pred = logits.argmax(1)
        correct += int((pred == y).sum())
        total += y.numel()
        if y.dim() == 3:  # segmentation: per-pixel labels
            counts = confusion_matrix(pred, y, logits.shape[1])
            confusion = counts if confusion is None else confusion + counts
    model.train(was_training)
    images = len(dataset)
    flops = count_flops(model)
    out = {
        "top1": 100.0 * correct / total,  # pixel accuracy for segmentation
        "loss": loss_sum / total,
        "gmacs": flops.gmacs,
        "img_per_s": images / compute if compute else math.nan,
        "images": images,
    }
    if confusion is not None:
        out["miou"] = miou(confusion)
        out["backbone_gmacs"] = flops.parts.get("backbone", 0) / 1e9
    if isinstance(model, TokenReductionMixin):
        out["kept_tokens"] = model.token_counts()
    stage = find_dynamic_stage(model)
    if stage is not None:
        out["kept_tokens"] = stage.keep_counts(stage.last_locations)
    return out


def train(cfg: TrainConfig) -> dict:
    """Run a whole training (the Python call behind ``dynamicvit train``); returns the last record."""
    return Trainer(cfg).fit()


def evaluate_checkpoint(path: str | os.PathLike, random_tokens: bool = False, **overrides) -> dict:
    """Rebuild the model of a training checkpoint (its saved config, ``overrides`` on top) and evaluate it.

    ``random_tokens`` keeps the same counts but chooses the tokens uniformly at random.
    """
    model, dataset, cfg = load_for_eval(path, **overrides)
    return evaluate(model, dataset, cfg, decisions_fn=random_selector(cfg.seed) if random_tokens else None)


def load_for_eval(path: str | os.PathLike, **overrides) -> tuple[nn.Module, Dataset, TrainConfig]:
    """:func:`load_trained` plus the test set its config describes."""
    model, cfg = load_trained(path, **overrides)
    return model, _dataset(cfg, "test"), cfg


def load_trained(path: str | os.PathLike, **overrides) -> tuple[nn.Module, TrainConfig]:
    """The eval-mode model of a training checkpoint, rebuilt from its saved config (``overrides`` on
    top; classes and channels read off the weights), and that config."""
    state = read_checkpoint(path)
    saved = state.get("config", {}) if isinstance(state, dict) else {}
    cfg = TrainConfig.from_dict({**saved, **overrides})
    weights = read_state_dict(state)
    found = infer_timm_kwargs(weights)
    chans, side = found["in_chans"], cfg.img_size or cfg.canvas
    model = _build_base(cfg, found["num_classes"], chans, (chans, side, side) if cfg.task == "segment" else None)
    if any(is_added_key(k) for k in weights) or (not cfg.dense and cfg.method != "dynamicvit"):
        model = _reduce(model, cfg)
    load_checkpoint(model, weights)
    return model.eval(), cfg
