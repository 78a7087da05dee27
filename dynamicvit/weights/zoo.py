"""The fifteen checkpoints of DynamicViT's release, by name: ``create_model(name, pretrained=True)``.

Names follow timm's ``architecture.tag`` style: ``dynamicvit_<backbone>.r<rho>`` (e.g.
``dynamicvit_convnext_tiny.r0_7``). Each entry holds the timm backbone, the keep rate, the release's
ImageNet-1k top-1/top-5 and FLOPs (GMACs, its README and arXiv 2106.02034 / 2207.01580) and the URL
of its file (Tsinghua Cloud; the same files are on Google Drive). Files are downloaded once into
torch's hub cache by :func:`dynamicvit.weights.download.download`, which checks them before caching.

ConvNeXt/Swin entries carry the release's keep ratios as it computes them: ``rho - 0.2`` in floating
point is 0.49999999999999994 for rho 0.7, so the release keeps ``int(196 · 0.4999…) = 97`` locations
where ``int(196 · 0.5)`` would be 98. :func:`release_keep_ratios` gives ratios whose counts
(:func:`dynamicvit.core.predictor.keep_count`) equal the release's on any grid of up to 10,000 locations.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

__all__ = ["ZOO", "ZooEntry", "list_models", "release_keep_ratios", "resolve"]


def release_keep_ratios(keep_rate: float, stages: int = 3) -> tuple[float, ...]:
    """The release's ConvNeXt/Swin ratios ``rho - 0.2·s`` with its float round-down kept: where the float
    lies below the decimal value, the ratio is lowered by 1e-5 so that ``int(N·r + 1e-6)`` rounds down too."""
    ratios = []
    for s in range(stages):
        exact = keep_rate - 0.2 * s  # as the release computes it (0.2·2 is exactly its 0.4)
        decimal = round(exact, 6)
        ratios.append(decimal - 1e-5 if exact < decimal else decimal)
    return tuple(ratios)


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint: backbone, budget, the release's accuracy and FLOPs, where to get it."""

    name: str
    arch: str  # timm model name of the backbone
    keep_rate: float
    top1: float  # ImageNet-1k, as published
    top5: float
    paper_gmacs: float  # as published ("FLOPs" in the papers are multiply-accumulates)
    url: str
    hierarchical: bool = False
    sha256: str | None = None  # the file's digest, checked on download when filled

    @property
    def keep_ratios(self) -> tuple[float, ...] | None:
        """The release's absolute per-predictor ratios (ConvNeXt/Swin); None for ViTs (rho^s)."""
        return release_keep_ratios(self.keep_rate) if self.hierarchical else None

    @property
    def options(self) -> dict:
        """Extra :func:`dynamicvit.sparsify` arguments that reproduce the release."""
        return {"keep_ratios": list(self.keep_ratios)} if self.hierarchical else {}


_CLOUD = "https://cloud.tsinghua.edu.cn/f/{}/?dl=1"
_RELEASE = [
    # name, timm backbone, rho, top-1, top-5, GMACs, Tsinghua Cloud file id
    ("deit_256", "deit_256_patch16_224", 0.7, 76.53, 93.12, 1.3, "b0e1ff6af1004039855e"),
    ("deit_small", "deit_small_patch16_224", 0.7, 79.32, 94.68, 2.9, "698896dfbcea430b9591"),
    ("deit_base", "deit_base_patch16_224", 0.7, 81.43, 95.46, 11.4, "660f27ddb6b945a797a8"),
    ("lvvit_s", "lvvit_s", 0.5, 81.97, 95.76, 3.7, "635cb172312749e39cf2"),
    ("lvvit_s", "lvvit_s", 0.7, 83.08, 96.25, 4.6, "d732a3511dd64db598e1"),
    ("lvvit_m", "lvvit_m", 0.7, 83.82, 96.58, 8.5, "b8d1efdfc41d4777903e"),
    ("convnext_tiny", "convnext_tiny", 0.7, 81.59, 95.72, 3.6, "95b2daf7593a42f48baa"),
    ("convnext_tiny", "convnext_tiny", 0.9, 82.06, 95.89, 3.9, "030c6b8268104c16a666"),
    ("convnext_small", "convnext_small", 0.7, 82.57, 96.29, 5.8, "293972cc7d8c4adaac23"),
    ("convnext_small", "convnext_small", 0.9, 83.12, 96.42, 6.8, "64c4ed5ab02d45998bf6"),
    ("convnext_base", "convnext_base", 0.7, 83.45, 96.56, 10.2, "1e3a861f272142c38bbc"),
    ("convnext_base", "convnext_base", 0.9, 83.96, 96.76, 11.9, "9b4c8df7b30d410bba75"),
    ("swin_tiny", "swin_tiny_patch4_window7_224", 0.7, 80.91, 95.42, 4.0, "6a3d0de592f04d77a2fa"),
    ("swin_small", "swin_small_patch4_window7_224", 0.7, 83.21, 96.33, 6.9, "86b58132f354495590d0"),
    ("swin_base", "swin_base_patch4_window7_224", 0.7, 83.43, 96.45, 12.1, "ea260248adc040929970"),
]
ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            name=f"dynamicvit_{short}.r{str(rho).replace('.', '_')}",
            arch=arch,
            keep_rate=rho,
            top1=top1,
            top5=top5,
            paper_gmacs=gmacs,
            url=_CLOUD.format(file_id),
            hierarchical=arch.startswith(("convnext", "swin")),
        )
        for short, arch, rho, top1, top5, gmacs, file_id in _RELEASE
    )
}
"""The release's fifteen fine-tuned models by name (``dynamicvit_deit_small.r0_7``, …): architecture, keep
rate, the release's accuracy and GFLOPs, and the checksum of its file (``list_models`` lists them)."""


def list_models(pattern: str = "*") -> list[str]:
    """Names of the released sparse models matching the shell-style ``pattern``.

    Args:
        pattern: shell-style filter, e.g. ``"dynamicvit_convnext*"``.

    Returns:
        Sorted zoo names.
    """
    return sorted(n for n in ZOO if fnmatch.fnmatch(n, pattern))


def resolve(name: str, keep_rate: float | None = None) -> tuple[str, float, dict]:
    """(timm backbone, keep rate, sparsify options) for a zoo name or a timm name. A zoo name gives its
    release's budget unless ``keep_rate`` overrides it; a timm name defaults to 0.7."""
    entry = ZOO.get(name)
    if entry is None:
        return name, 0.7 if keep_rate is None else keep_rate, {}
    if keep_rate is None or keep_rate == entry.keep_rate:
        return entry.arch, entry.keep_rate, entry.options
    return entry.arch, keep_rate, {}
