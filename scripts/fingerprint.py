"""Fingerprint what every family and method computes: tiny seeded models, the outputs of their eval forward in
each keep mode they have, of a seeded training forward and its loss, and their MACs, as SHA-256 digests in one
JSON file. Run before and after a refactoring and compare the files: a change that moves code without changing
what it computes leaves every digest as it was.

    python scripts/fingerprint.py out.json
"""

from __future__ import annotations

import hashlib
import json
import sys

import timm
import torch
from timm.models.convnext import ConvNeXt
from timm.models.deit import VisionTransformerDistilled
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

import dynamicvit
from dynamicvit.core.files import atomic_write_text

VIT = dict(img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2, num_classes=10)
BACKBONES = {
    "vit": (lambda: VisionTransformer(**VIT), 32),
    "vit-registers": (lambda: VisionTransformer(**VIT, reg_tokens=2), 32),
    "deit-distilled": (lambda: VisionTransformerDistilled(**VIT), 32),
    "lvvit": (lambda: timm.create_model("lvvit_s", **VIT), 32),
    "eva": (lambda: timm.create_model("eva02_tiny_patch14_224", img_size=28, depth=4, num_classes=10), 28),
    "beit": (
        lambda: timm.create_model(
            "beit_base_patch16_224", img_size=32, depth=4, embed_dim=32, num_heads=2, num_classes=10
        ),
        32,
    ),  # fmt: skip
    "convnext": (lambda: ConvNeXt(depths=(1, 1, 4, 1), dims=(8, 16, 32, 48), num_classes=10), 64),
    "swin": (
        lambda: SwinTransformer(
            num_classes=10,
            img_size=64,
            patch_size=4,
            window_size=4,
            embed_dim=16,
            depths=(1, 1, 4, 1),
            num_heads=(1, 1, 2, 2),
        ),
        64,
    ),  # fmt: skip
}


def digest(value) -> str:
    """SHA-256 of the tensors in ``value`` (a tensor, or nested tuples/lists/dicts/NamedTuples of them)."""
    h = hashlib.sha256()
    for t in _tensors(value):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for k in sorted(value):
            yield from _tensors(value[k])
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def attempt(fn) -> str:
    """The digest of ``fn()``, or the first line of the error it raises (an error is a result too)."""
    try:
        return digest(fn())
    except (TypeError, ValueError, RuntimeError) as err:
        return f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"


def fingerprint(backbone: str, method: str) -> dict:
    """Digests of one backbone reduced by one method."""
    make, side = BACKBONES[backbone]
    torch.manual_seed(0)
    model = make()
    try:
        model = dynamicvit.apply_method(model, method, keep_rate=0.5, r=2)
    except (TypeError, ValueError, AttributeError) as err:
        return {"unsupported": str(err).splitlines()[0][:80]}
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(1))
    out = {}
    model.eval()
    reducer = dynamicvit.find_reducer(model)
    with torch.no_grad():
        out["eval"] = attempt(lambda: model(x))
        if reducer is not None and reducer.supports_adaptive:
            reducer.keep_mode = "threshold"
            out["adaptive"] = attempt(lambda: model(x))
            if reducer.supports_learned:
                torch.manual_seed(2)
                reducer.keep_mode = "learned"
                out["learned"] = attempt(lambda: model(x))
            reducer.keep_mode = "fixed"
    out["gmacs"] = round(dynamicvit.count_flops(model.eval(), side).gmacs, 9)
    model.train()
    torch.manual_seed(3)
    output = model(x)
    out["train"] = digest(output)
    if dynamicvit.method_of(model) is not None and dynamicvit.method_of(model).learned and reducer is not None:
        reducer.keep_mode = "fixed"
        torch.manual_seed(3)
        criterion = dynamicvit.build_criterion(model, None, torch.nn.CrossEntropyLoss(), learned=True, ratio_weight=2)
        try:
            loss, _ = criterion(x, model(x), torch.tensor([1, 2, 3]))
        except (ValueError, RuntimeError) as err:  # a distilled DeiT's two heads, LV-ViT's token labels: the
            # criterion needs its wrapper or its targets
            out["loss"] = str(err).splitlines()[0][:80]
            return out
        loss.backward()
        out["loss"] = digest(loss)
        out["grad"] = digest([p.grad for p in model.parameters() if p.grad is not None])
    return out


def main(path: str) -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    results = {f"{b}/{m}": fingerprint(b, m) for b in BACKBONES for m in dynamicvit.METHODS}
    atomic_write_text(path, json.dumps(results, indent=1, sort_keys=True))
    print(f"{len(results)} models fingerprinted into {path}")


if __name__ == "__main__":
    main(sys.argv[1])
