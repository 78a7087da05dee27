"""ONNX export of eval-mode models (dense, or reduced by an exportable method) with a dynamic batch.

Uses torch's ``torch.export``-based ONNX exporter (needs ``onnxscript``) and, when
``onnxruntime`` is installed, checks the exported graph against PyTorch on fresh inputs
of two batch sizes.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dynamicvit.core.files import atomic_write
from dynamicvit.core.flops import input_size
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.methods.registry import method_of
from dynamicvit.tasks.registry import task_of

__all__ = ["check_opset", "export_onnx", "onnx_parity", "onnx_session"]


OPSETS = range(18, 24)  # what torch.export's ONNX exporter writes


def check_opset(opset: int | None) -> None:
    """Raise a ``ValueError`` unless ``opset`` is ``None`` (the exporter's default) or one it writes."""
    if opset is not None and opset not in OPSETS:
        raise ValueError(f"--opset must be {OPSETS[0]} to {OPSETS[-1]} (torch's ONNX exporter), got {opset}")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    opset: int | None = None,
    check: bool = True,
    tolerance: float | None = None,
) -> dict:
    """Write ``model`` (put in eval mode) as ONNX with input ``images`` (B, C, H, W) and output ``logits``,
    the batch dimension dynamic. The file appears only when the export (and the check) succeeded; a failure
    leaves the previous file, or none.

    Args:
        model: a dense model, or one reduced by an exportable method in the fixed keep mode.
        path: the ONNX file to write.
        opset: the ONNX opset (default: the exporter's).
        check: compare the file against PyTorch with onnxruntime on fresh inputs.
        tolerance: with ``check``, the largest absolute logit difference accepted (else a ``ValueError``).

    Returns:
        ``path``, ``bytes`` and, with ``check``, ``max_abs_diff``.
    """
    check_opset(opset)
    try:
        import onnxscript  # noqa: F401  (the exporter needs it; fail early with advice)
    except ImportError:
        raise ImportError("ONNX export needs onnx and onnxscript: pip install 'dynamicvit[export]'") from None
    task_of(model).check_export(model)
    method = method_of(model)
    if method is not None and not method.exportable:
        raise ValueError(f"the {method.name} method draws numbers at run time and cannot be exported")
    reducer = find_reducer(model)
    if reducer is not None and not reducer.keep_rule.onnx:
        raise ValueError(
            f"the {reducer.keep_mode} keep mode cannot be exported: each image's token count depends on its data, and "
            "torch.export (behind torch.onnx) stops on such data-dependent sizes; export the fixed mode "
            "(model.keep_mode = 'fixed')"
        )
    model = model.eval()
    path = Path(path)
    with atomic_write(path) as tmp:
        _export(model, tmp, opset)
        result = {"path": str(path), "bytes": tmp.stat().st_size}
        if check:
            result["max_abs_diff"] = onnx_parity(model, tmp)
            if tolerance is not None and result["max_abs_diff"] > tolerance:
                raise ValueError(
                    f"the ONNX export differs from PyTorch by {result['max_abs_diff']:.2e} > --tolerance "
                    f"{tolerance:g}; {path} was not written"
                )
    return result


def _export(model: nn.Module, tmp: Path, opset: int | None) -> None:
    """``torch.onnx.export`` (dynamo) of ``model`` to ``tmp`` (an :func:`atomic_write` temporary), its log kept
    off the console."""
    x = torch.randn(2, *input_size(model))
    batch = torch.export.Dim("batch", min=1, max=4096)
    log = io.StringIO()
    with contextlib.redirect_stdout(log), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            external_data=False,
        )
    program.save(str(tmp))


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for ``path`` (``threads`` intra-op threads, default torch's)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("running ONNX models needs onnxruntime: pip install 'dynamicvit[export]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3
    # idle threads sleep instead of spinning: spinning threads steal the cores torch is timed on
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_parity(model: nn.Module, path: str | os.PathLike, batch_sizes: tuple[int, ...] = (1, 3)) -> float:
    """Largest absolute logit difference between ``model`` and its ONNX file on random inputs."""
    session = onnx_session(path)
    worst = 0.0
    for b in batch_sizes:
        x = torch.randn(b, *input_size(model))
        with torch.inference_mode():
            ref = model.eval()(x).numpy()
        out = session.run(None, {"images": x.numpy()})[0]
        worst = max(worst, float(np.abs(out - ref).max()))
    return worst
