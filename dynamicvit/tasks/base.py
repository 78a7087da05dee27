"""The contract every task keeps (as detectron2's meta-architectures and torchvision's detection models do):
build the dense model for a data set, move a batch, give the objective, evaluate the metric. The trainer,
evaluation, export and the command line call a :class:`Task` and never branch on which task it is."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = ["Task"]


class Task:
    """One task (classification, segmentation, detection, ...); subclass it in a module of
    :mod:`dynamicvit.tasks` and add one line to :data:`dynamicvit.tasks.TASKS`.

    Its models carry the task's name in a ``task`` attribute (a classifier need not: it is the default),
    so :func:`dynamicvit.tasks.task_of` finds the contract of any model.
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""  # what ``--task NAME`` does, for the command line
    fixed_input_size: ClassVar[bool] = True  # its models are built for the data set's image size
    mixes_labels: ClassVar[bool] = False  # mixup / cutmix apply to its labels
    learns_without_labels: ClassVar[bool] = True  # label-free calibration (--no-labels) applies
    shards_evaluation: ClassVar[bool] = False  # metrics add up over images: each rank evaluates a part
    targets_in_forward: ClassVar[bool] = False  # the model computes its own losses from the targets
    picture: ClassVar[str] = ""  # what :meth:`save_picture` draws ("": the task draws none)

    def build_dense(
        self,
        make: Callable[..., nn.Module],
        name: str,
        head_classes: int | None,
        input_size: tuple[int, int, int] | None,
        **kwargs: Any,
    ) -> nn.Module:
        """The dense model of timm architecture ``name`` taking ``input_size`` (C, H, W) images (``None``: any
        size); ``make(name, **timm_kwargs)`` builds timm models, ``kwargs`` are the run's timm kwargs (its
        classes among them), ``head_classes`` the classes of a task head on the backbone."""
        raise NotImplementedError

    def base_criterion(self) -> Callable | None:
        """The task's own objective (``None``: the trainer's classification loss applies)."""
        return None

    def batch_to(self, targets: Any, device: torch.device) -> Any:
        """The batch's labels or targets on ``device``."""
        return targets.to(device, non_blocking=True)

    def forward_kwargs(self, targets: Any) -> dict:
        """Keyword arguments of the model's training forward besides the images."""
        return {"targets": targets} if self.targets_in_forward else {}

    def evaluate(self, model: nn.Module, dataset, cfg, batch_size: int, decisions_fn, reference) -> dict:
        """The task's metrics of ``model`` (eval mode) on ``dataset`` (:func:`dynamicvit.tasks.evaluate.evaluate`)."""
        raise NotImplementedError

    def check_export(self, model: nn.Module) -> None:
        """Refuse, in one line, a model of this task that ONNX export cannot write (nothing to refuse when
        the model returns one tensor)."""

    def save_picture(self, model: nn.Module, dataset, path: str | os.PathLike, count: int = 4) -> None:
        """A PNG of the model's results on the first ``count`` items of ``dataset`` (``dynamicvit eval
        --picture``), for a task whose :attr:`picture` says what it draws."""
        raise NotImplementedError(f"the {self.name} task draws no picture")
