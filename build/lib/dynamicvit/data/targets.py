"""Detection targets as torchvision's detectors take them, and their batching."""

from __future__ import annotations

import torch

__all__ = ["collate_detection", "detection_target"]


def collate_detection(batch) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Images stacked (one size), targets as a list of dicts: the detection sets' ``collate_fn``."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


def detection_target(labels: list[int], boxes: list) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
