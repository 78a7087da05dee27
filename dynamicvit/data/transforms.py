"""The training and evaluation transforms of image data (folders, shards, Hugging Face sets): timm's
``create_transform`` with the run's augmentation (RandAugment, random erasing, colour jitter, interpolation),
as DeiT's recipe (arXiv 2012.12877) and DynamicViT's release use it."""

from __future__ import annotations

from collections.abc import Callable

from dynamicvit.data.registry import DataOptions

__all__ = ["check_auto_augment", "image_transform"]


def image_transform(o: DataOptions, training: bool) -> Callable:
    """The transform of a PIL image into a normalised (3, img_size, img_size) tensor: timm's training
    pipeline (random resized crop, flip, ``o.aa``, colour jitter, random erasing) or its evaluation one
    (resize, centre crop)."""
    from timm.data import create_transform

    if not training:
        return create_transform(o.img_size, is_training=False)
    return create_transform(
        o.img_size,
        is_training=True,
        auto_augment=o.aa,
        re_prob=o.reprob,
        color_jitter=o.color_jitter,
        interpolation=o.interpolation,
    )


def check_auto_augment(policy: str) -> None:
    """Raise a one-line ``ValueError`` unless timm can build the auto-augment ``policy`` (``rand-m9-...``,
    ``augmix-...``, ``v0``/``original``/``3a``-style AutoAugment, ``trivial...``)."""
    from timm.data import create_transform

    try:
        create_transform(32, is_training=True, auto_augment=policy)
    except Exception as err:  # timm raises AssertionError, KeyError or ValueError by policy kind
        raise ValueError(
            f"--aa {policy!r} is no timm auto-augment policy (e.g. rand-m9-mstd0.5-inc1, augmix-m5-w4-d2, "
            f"original): {type(err).__name__} {err}"
        ) from None
