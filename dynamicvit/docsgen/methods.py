"""The documentation's table of token-reduction methods, from the method registry's attributes, so a method
registered later is listed with what it needs (training, export) without editing a page."""

from __future__ import annotations

from dynamicvit.methods.registry import METHODS

__all__ = ["methods_table"]


def methods_table() -> str:
    """One line per registered method: what it does, its paper, whether it trains parameters of its own,
    exports to ONNX and keeps the same number of tokens in every image."""
    lines = [
        "| method | what it does | paper | trains | ONNX | tokens per image |",
        "|---|---|---|---|---|---|",
    ]
    for name, method in METHODS.items():
        lines.append(
            f"| `{name}` | {method.summary} | {f'arXiv {method.paper}' if method.paper else 'baseline'} "
            f"| {'yes' if method.learned else 'no'} | {'yes' if method.exportable else 'no'} "
            f"| {'its own' if method.per_image else 'the same for every image'} |"
        )
    return "\n".join(lines)
