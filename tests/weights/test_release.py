"""Checkpoints in the exact layouts of DynamicViT's release (tiny widths and depths) convert, load, and
give the release's eval output.

Each reference below is written from the release's eval equations (arXiv 2106.02034, 2207.01580)
directly on the release's state dict – plain tensor maths, no timm and no package code – so a wrong
key mapping, a missing fast-path scale, a LayerNorm epsilon or keep count that differs from the
release's makes the comparison fail.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dynamicvit
from dynamicvit.builder import load_trained
from dynamicvit.cli import main
from dynamicvit.weights.checkpoint import CheckpointError, load_checkpoint
from dynamicvit.weights.download import download, sha256
from dynamicvit.weights.zoo import ZOO, list_models, release_keep_ratios

K = 5  # classes
RHO = 0.7


# -- the release's layouts: (key, shape) lists filled with random values ---------------------
def fill(spec: dict[str, tuple[int, ...]], buffers: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes: weights large enough that every branch and every score
    matters; positive BatchNorm variances; buffers as given."""
    g = torch.Generator().manual_seed(1)
    out = {}
    for key, shape in spec.items():
        if key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif len(shape) == 1 and key.endswith(".weight"):  # norm scales
            out[key] = 1 + 0.2 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 4
            out[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return {**out, **(buffers or {})}


def predictor_spec(prefix: str, dim: int, conv: bool) -> dict:
    k = (1, 1) if conv else ()
    spec = {f"{prefix}.in_conv.0.weight": (dim,), f"{prefix}.in_conv.0.bias": (dim,)}
    for name, cout, cin in (("in_conv.1", dim, dim), ("out_conv.0", dim // 2, dim), ("out_conv.2", dim // 4, dim // 2),
                            ("out_conv.4", 2, dim // 4)):  # fmt: skip
        spec[f"{prefix}.{name}.weight"], spec[f"{prefix}.{name}.bias"] = (cout, cin, *k), (cout,)
    return spec


def linear_spec(prefix: str, cout: int, cin: int, bias: bool = True) -> dict:
    return {f"{prefix}.weight": (cout, cin), **({f"{prefix}.bias": (cout,)} if bias else {})}


def norm_spec(prefix: str, dim: int) -> dict:
    return {f"{prefix}.weight": (dim,), f"{prefix}.bias": (dim,)}


# -- equations of the release's eval forward --------------------------------------------------
def ln(x, sd, key, eps):
    return F.layer_norm(x, x.shape[-1:], sd[f"{key}.weight"], sd[f"{key}.bias"], eps)


def lin(x, sd, key):
    w = sd[f"{key}.weight"]
    return x @ w.flatten(1).T + sd.get(f"{key}.bias", 0)


def keep_log_prob(tokens, sd, key, eps):
    """The predictor: local half per token, global half = mean over the (alive) tokens; log p(keep)."""
    h = F.gelu(lin(ln(tokens, sd, f"{key}.in_conv.0", eps), sd, f"{key}.in_conv.1"))
    c = h.shape[-1] // 2
    h = torch.cat([h[..., :c], h[..., c:].mean(1, keepdim=True).expand(-1, h.shape[1], -1)], -1)
    h = F.gelu(lin(F.gelu(lin(h, sd, f"{key}.out_conv.0")), sd, f"{key}.out_conv.2"))
    return F.log_softmax(lin(h, sd, f"{key}.out_conv.4"), -1)[..., 0]


def best(scores, count):
    return torch.argsort(scores, dim=1, descending=True)[:, :count]


def kept_mask(keep, n):
    return torch.zeros(keep.shape[0], n, dtype=torch.bool).scatter_(1, keep, True)


def attend(x, sd, key, heads, bias=None):
    b, n, c = x.shape
    q, k, v = lin(x, sd, f"{key}.qkv").reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    a = (q * (c // heads) ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        a = a + bias
    return lin((a.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c), sd, f"{key}.proj")


def mlp(x, sd, key):
    return lin(F.gelu(lin(x, sd, f"{key}.fc1")), sd, f"{key}.fc2")


# -- ViTs: DeiT and LV-ViT ---------------------------------------------------------------------
def vit_spec(dim, depth, heads, patches, prune, lvvit):
    spec = {"cls_token": (1, 1, dim), "pos_embed": (1, patches + 1, dim)}
    if lvvit:
        for i, cin in ((1, 3), (2, 64), (3, 64)):
            spec[f"patch_embed.conv{i}.weight"] = (64, cin, 7, 7) if i == 1 else (64, cin, 3, 3)
            for part in ("weight", "bias", "running_mean", "running_var"):
                spec[f"patch_embed.bn{i}.{part}"] = (64,)
            spec[f"patch_embed.bn{i}.num_batches_tracked"] = ()
        spec |= {"patch_embed.proj.weight": (dim, 64, 8, 8), "patch_embed.proj.bias": (dim,)}
    else:
        spec |= {"patch_embed.proj.weight": (dim, 3, 16, 16), "patch_embed.proj.bias": (dim,)}
    hidden = dim * (3 if lvvit else 4)
    for j in range(depth):
        p = f"blocks.{j}"
        spec |= norm_spec(f"{p}.norm1", dim) | norm_spec(f"{p}.norm2", dim)
        spec |= linear_spec(f"{p}.attn.qkv", 3 * dim, dim, bias=not lvvit) | linear_spec(f"{p}.attn.proj", dim, dim)
        spec |= linear_spec(f"{p}.mlp.fc1", hidden, dim) | linear_spec(f"{p}.mlp.fc2", dim, hidden)
    spec |= norm_spec("norm", dim) | linear_spec("head", K, dim)
    if lvvit:
        spec |= linear_spec("aux_head", K, dim)
    for s in range(len(prune)):
        spec |= predictor_spec(f"score_predictor.{s}", dim, conv=False)
    return spec


def vit_reference(sd, x, heads, prune, lvvit):
    if lvvit:  # 7×7/2, 3×3, 3×3 convs + BN (running statistics) + ReLU, then (p/2)² patches
        for i in (1, 2, 3):
            x = F.conv2d(x, sd[f"patch_embed.conv{i}.weight"], stride=2 if i == 1 else 1, padding=3 if i == 1 else 1)
            bn = f"patch_embed.bn{i}"
            x = F.relu(F.batch_norm(x, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"],
                                    sd[f"{bn}.bias"], training=False, eps=1e-5))  # fmt: skip
    w = sd["patch_embed.proj.weight"]
    x = F.conv2d(x, w, sd["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    n0 = x.shape[1]
    x = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd["pos_embed"]
    eps, skip = (1e-5, 2.0) if lvvit else (1e-6, 1.0)  # LV-ViT: nn.LayerNorm, residuals / skip_lam
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for j in range(depth):
        if j in prune:  # keep int(N·rho^s) of the patch tokens, by log p(keep)
            s = prune.index(j) + 1
            keep = best(keep_log_prob(x[:, 1:], sd, f"score_predictor.{s - 1}", 1e-5), int(n0 * RHO**s))
            x = torch.cat([x[:, :1], x[:, 1:].gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))], 1)
        x = x + attend(ln(x, sd, f"blocks.{j}.norm1", eps), sd, f"blocks.{j}.attn", heads) / skip
        x = x + mlp(ln(x, sd, f"blocks.{j}.norm2", eps), sd, f"blocks.{j}.mlp") / skip
    x = ln(x, sd, "norm", eps)
    out = lin(x[:, 0], sd, "head")
    return out + 0.5 * lin(x[:, 1:], sd, "aux_head").amax(1) if lvvit else out


# -- ConvNeXt (DynamicCNN) ---------------------------------------------------------------------
CNX = dict(depths=(1, 1, 4, 1), dims=(8, 16, 32, 32))


def convnext_spec(prune):
    depths, dims = CNX["depths"], CNX["dims"]
    spec = {"downsample_layers.0.0.weight": (dims[0], 3, 4, 4), "downsample_layers.0.0.bias": (dims[0],)}
    spec |= norm_spec("downsample_layers.0.1", dims[0])
    for i in (1, 2, 3):
        spec |= norm_spec(f"downsample_layers.{i}.0", dims[i - 1])
        spec |= {
            f"downsample_layers.{i}.1.weight": (dims[i], dims[i - 1], 2, 2),
            f"downsample_layers.{i}.1.bias": (dims[i],),
        }
    for i, (depth, d) in enumerate(zip(depths, dims, strict=True)):
        for j in range(depth):
            p = f"stages.{i}.{j}"
            spec |= {f"{p}.dwconv.weight": (d, 1, 7, 7), f"{p}.dwconv.bias": (d,), f"{p}.gamma": (d,)}
            spec |= (
                norm_spec(f"{p}.norm", d)
                | linear_spec(f"{p}.pwconv1", 4 * d, d)
                | linear_spec(f"{p}.pwconv2", d, 4 * d)
            )
            if i == 2 and j >= prune[0]:
                spec |= norm_spec(f"{p}.fast_path.0", d) | linear_spec(f"{p}.fast_path.1", d, d)
                spec[f"{p}.fast_path_gamma"] = (d,)
    spec |= norm_spec("norm", dims[3]) | linear_spec("head", K, dims[3])
    for s in range(len(prune)):
        spec |= predictor_spec(f"score_predictor.{s}", dims[2], conv=True)
    return spec


def convnext_reference(sd, x, prune, ratios):
    def ln_map(x, key):  # channels-first LayerNorm, eps 1e-6
        return ln(x.permute(0, 2, 3, 1), sd, key, 1e-6).permute(0, 3, 1, 2)

    x = ln_map(F.conv2d(x, sd["downsample_layers.0.0.weight"], sd["downsample_layers.0.0.bias"], stride=4),
               "downsample_layers.0.1")  # fmt: skip
    for i, depth in enumerate(CNX["depths"]):
        if i:
            d = f"downsample_layers.{i}"
            x = F.conv2d(ln_map(x, f"{d}.0"), sd[f"{d}.1.weight"], sd[f"{d}.1.bias"], stride=2)
        keep = None
        for j in range(depth):
            p = f"stages.{i}.{j}"
            b, c, h, w = x.shape
            if i == 2 and j in prune:  # each predictor chooses afresh among all H·W locations
                s = prune.index(j)
                scores = keep_log_prob(x.flatten(2).transpose(1, 2), sd, f"score_predictor.{s}", 1e-6)
                keep = kept_mask(best(scores, int(h * w * ratios[s])), h * w)
            y = (
                F.conv2d(x, sd[f"{p}.dwconv.weight"], sd[f"{p}.dwconv.bias"], padding=3, groups=c)
                .flatten(2)
                .transpose(1, 2)
            )
            branch = sd[f"{p}.gamma"] * lin(
                F.gelu(lin(ln(y, sd, f"{p}.norm", 1e-6), sd, f"{p}.pwconv1")), sd, f"{p}.pwconv2"
            )
            if keep is not None:
                fast = sd[f"{p}.fast_path_gamma"] * lin(ln(y, sd, f"{p}.fast_path.0", 1e-6), sd, f"{p}.fast_path.1")
                branch = torch.where(keep[..., None], branch, fast)
            x = x + branch.transpose(1, 2).reshape(b, c, h, w)
    return lin(ln(x.mean((-2, -1)), sd, "norm", 1e-6), sd, "head")


# -- Swin (DynamicSwin) ------------------------------------------------------------------------
SWIN = dict(img_size=64, window_size=2, embed_dim=8, depths=(1, 1, 4, 1), num_heads=(1, 2, 4, 8))


def window_geometry(res: int, block: int) -> tuple[int, int]:
    """(window, shift) of a block on a res×res map: odd blocks shift by half a window; a map no larger
    than the window is one unshifted window."""
    ws = SWIN["window_size"]
    if res <= ws:
        return res, 0
    return ws, ws // 2 if block % 2 else 0


def relative_index(ws: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    y, x = ys.flatten(), xs.flatten()
    return (y[:, None] - y[None] + ws - 1) * (2 * ws - 1) + (x[:, None] - x[None] + ws - 1)


def windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def shift_mask(res: int, ws: int, shift: int) -> torch.Tensor:
    """−100 between positions of a shifted window that come from different regions of the map."""
    labels = torch.zeros(1, res, res, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for n, (hs, wsl) in enumerate((a, b) for a in cuts for b in cuts):
        labels[:, hs, wsl] = n
    lab = windows(labels, ws).squeeze(-1)
    return (lab[:, None, :] != lab[:, :, None]).float() * -100.0


def swin_spec(prune):
    spec, buffers = (
        linear_spec("patch_embed.proj", SWIN["embed_dim"], 3) | norm_spec("patch_embed.norm", SWIN["embed_dim"]),
        {},
    )
    spec["patch_embed.proj.weight"] = (SWIN["embed_dim"], 3, 4, 4)
    res = SWIN["img_size"] // 4
    for i, (depth, heads) in enumerate(zip(SWIN["depths"], SWIN["num_heads"], strict=True)):
        d = SWIN["embed_dim"] * 2**i
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}"
            ws, shift = window_geometry(res, j)
            spec |= norm_spec(f"{p}.norm1", d) | norm_spec(f"{p}.norm2", d)
            spec[f"{p}.attn.relative_position_bias_table"] = ((2 * ws - 1) ** 2, heads)
            spec |= linear_spec(f"{p}.attn.qkv", 3 * d, d) | linear_spec(f"{p}.attn.proj", d, d)
            spec |= linear_spec(f"{p}.mlp.fc1", 4 * d, d) | linear_spec(f"{p}.mlp.fc2", d, 4 * d)
            buffers[f"{p}.attn.relative_position_index"] = relative_index(ws)
            if shift:
                buffers[f"{p}.attn_mask"] = shift_mask(res, ws, shift)
            if i == 2 and j >= prune[0]:
                spec |= norm_spec(f"{p}.fastmlp.fc1.0", d) | linear_spec(f"{p}.fastmlp.fc1.1", d, d)
        if i == 2:
            for s in range(len(prune)):
                spec |= predictor_spec(f"layers.2.score_predictor.{s}", d, conv=False)
        if i < 3:
            spec |= linear_spec(f"layers.{i}.downsample.reduction", 2 * d, 4 * d, bias=False)
            spec |= norm_spec(f"layers.{i}.downsample.norm", 4 * d)
            res //= 2
    d = SWIN["embed_dim"] * 8
    spec |= norm_spec("norm", d) | linear_spec("head", K, d)
    return spec, buffers


def swin_reference(sd, x, prune, ratios):
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=4).permute(0, 2, 3, 1)
    x = ln(x, sd, "patch_embed.norm", 1e-5)
    for i, (depth, heads) in enumerate(zip(SWIN["depths"], SWIN["num_heads"], strict=True)):
        keep = None
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}"
            b, res, _, c = x.shape
            ws, shift = window_geometry(res, j)
            if i == 2 and j in prune:
                s = prune.index(j)
                scores = keep_log_prob(x.reshape(b, -1, c), sd, f"layers.2.score_predictor.{s}", 1e-5)
                keep = kept_mask(best(scores, int(res * res * ratios[s])), res * res).view(b, res, res)
            h = ln(x, sd, f"{p}.norm1", 1e-5)
            if shift:
                h = h.roll((-shift, -shift), (1, 2))
            table = sd[f"{p}.attn.relative_position_bias_table"]
            bias = table[relative_index(ws).flatten()].view(ws * ws, ws * ws, heads).permute(2, 0, 1)
            nw = (res // ws) ** 2
            if shift:
                bias = bias[None] + shift_mask(res, ws, shift)[:, None]  # (windows, heads, N, N)
            attn = attend(windows(h, ws), sd, f"{p}.attn", heads, bias.repeat(b, 1, 1, 1) if shift else bias)
            h = attn.view(b, res // ws, res // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, res, res, c)
            assert nw * b == attn.shape[0]
            x = x + (h.roll((shift, shift), (1, 2)) if shift else h)
            branch = mlp(ln(x, sd, f"{p}.norm2", 1e-5), sd, f"{p}.mlp")
            if keep is not None:
                fast = lin(ln(x, sd, f"{p}.fastmlp.fc1.0", 1e-5), sd, f"{p}.fastmlp.fc1.1")
                branch = torch.where(keep[..., None], branch, fast)
            x = x + branch
        if i < 3:  # patch merging: the 2×2 neighbours (0,0), (1,0), (0,1), (1,1) concatenated
            x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
            x = lin(ln(x, sd, f"layers.{i}.downsample.norm", 1e-5), sd, f"layers.{i}.downsample.reduction")
    return lin(ln(x, sd, "norm", 1e-5).mean((1, 2)), sd, "head")


# -- the tests ---------------------------------------------------------------------------------
def save_release(tmp_path, state):
    """Saved as the release saves: ``{"model": ..., "args": Namespace, "epoch": ...}``."""
    path = tmp_path / "release.pth"
    torch.save({"model": state, "args": argparse.Namespace(model="x", base_rate=RHO), "epoch": 29}, path)
    return path


PRUNE = [1, 2, 3]
RELEASE_RATIOS = [RHO - 0.2 * s for s in range(3)]  # as the release computes them: 0.7, 0.4999…, 0.2999…


def build_case(family, tmp_path):
    if family in ("deit", "lvvit"):
        lvvit = family == "lvvit"
        state = fill(vit_spec(32, 4, 2, 16, PRUNE, lvvit))
        name = "dynamicvit_lvvit_s.r0_7" if lvvit else "dynamicvit_deit_small.r0_7"
        model = dynamicvit.create_model(name, checkpoint_path=save_release(tmp_path, state), img_size=64, embed_dim=32,
                                        depth=4, num_heads=2, num_classes=K)  # fmt: skip
        return model, lambda x: vit_reference(state, x, 2, PRUNE, lvvit)
    if family == "convnext":
        state = fill(convnext_spec(PRUNE))
        path = save_release(tmp_path, state)
        model = dynamicvit.create_model("dynamicvit_convnext_tiny.r0_7", checkpoint_path=path, num_classes=K, **CNX)
        return model, lambda x: convnext_reference(state, x, PRUNE, RELEASE_RATIOS)
    spec, buffers = swin_spec(PRUNE)
    state = fill(spec, buffers)
    path = save_release(tmp_path, state)
    model = dynamicvit.create_model("dynamicvit_swin_tiny.r0_7", checkpoint_path=path, num_classes=K, **SWIN)
    return model, lambda x: swin_reference(state, x, PRUNE, RELEASE_RATIOS)


@pytest.mark.parametrize("family", ["deit", "lvvit", "convnext", "swin"])
def test_release_checkpoint_gives_the_release_output(family, tmp_path):
    model, reference = build_case(family, tmp_path)
    model.eval()
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            ours, ref = model(x), reference(x)
        assert ours.shape == (batch, K)
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_release_keep_counts_reproduce_its_float_round_down():
    """The release keeps int(N·(0.7 − 0.2)) = int(N·0.4999…) locations: one fewer than N/2 on even grids."""
    ratios = release_keep_ratios(0.7)
    for n in (16, 49, 196, 576, 1000, 9801):
        ours = [dynamicvit.core.predictor.keep_count(n, r) for r in ratios]
        assert ours == [max(1, int(n * r)) for r in RELEASE_RATIOS], n
    assert release_keep_ratios(0.9) == (0.9, 0.7, 0.5)


def test_converted_hierarchical_models_use_the_release_epsilons_and_scales(tmp_path):
    """ConvNeXt's added LayerNorms use 1e-6 like the backbone; a Swin fast path gets a unit scale."""
    model, _ = build_case("convnext", tmp_path)
    stage = model.dynamic_stage
    assert stage.score_predictor[0].in_conv[0].eps == 1e-6 and stage.blocks[1].fast_path.norm.eps == 1e-6
    model, _ = build_case("swin", tmp_path)
    stage = model.dynamic_stage
    assert stage.score_predictor[0].in_conv[0].eps == 1e-5
    assert torch.equal(stage.blocks[1].fast_path.gamma, torch.ones_like(stage.blocks[1].fast_path.gamma))


@pytest.mark.promise(
    "bad input",
    "a release checkpoint into a dense model → `checkpoint … does not fit ConvNeXt … – unexpected "
    "keys: score_predictor.0.in_conv.0.bias, …`",
)
def test_release_checkpoint_into_a_dense_model_names_the_extra_keys(tmp_path):
    state = fill(convnext_spec(PRUNE))
    import timm

    dense = timm.create_model("convnext_tiny", num_classes=K, **CNX)
    with pytest.raises(CheckpointError, match="unexpected keys: score_predictor"):
        load_checkpoint(dense, save_release(tmp_path, state))


def test_zoo_lists_all_fifteen_release_models():
    names = list_models()
    assert len(names) == 15 == len(ZOO)
    assert "dynamicvit_convnext_tiny.r0_9" in names and "dynamicvit_lvvit_m.r0_7" in names
    assert list_models("dynamicvit_swin*") == [
        "dynamicvit_swin_base.r0_7",
        "dynamicvit_swin_small.r0_7",
        "dynamicvit_swin_tiny.r0_7",
    ]
    entry = ZOO["dynamicvit_lvvit_s.r0_5"]
    assert (entry.arch, entry.keep_rate, entry.top1, entry.paper_gmacs) == ("lvvit_s", 0.5, 81.97, 3.7)
    assert all(e.url.startswith("https://") for e in ZOO.values())


def test_zoo_models_build_with_the_release_budget():
    model = dynamicvit.create_model("dynamicvit_convnext_tiny.r0_9", num_classes=K, **CNX)
    assert model.keep_ratios == [0.9, 0.7, 0.5]
    model = dynamicvit.create_model("dynamicvit_lvvit_s.r0_5", img_size=64, embed_dim=32, depth=4, num_heads=2)
    assert model.keep_rate == 0.5 and model.prune_layers == [1, 2, 3]


@pytest.mark.promise(
    "bad input",
    "a zoo model offline (nothing is cached) → `cannot download dynamicvit_swin_tiny.r0_7 from "
    "https://cloud.tsinghua.edu.cn/f/…/?dl=1 (…); download it where you are online and pass it with "
    "checkpoint_path=FILE …`",
)
def test_zoo_download_offline_names_the_url_and_the_way_out(tmp_path, monkeypatch):
    def offline(url, dst, **_):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    name = "dynamicvit_swin_tiny.r0_7"
    with pytest.raises(ValueError, match=r"cannot download .*cloud\.tsinghua\.edu\.cn.*checkpoint_path=FILE"):
        download(name, tmp_path)
    with pytest.raises(ValueError, match="unknown zoo model"):
        download("dynamicvit_nothing.r0_7", tmp_path)
    assert not list(tmp_path.iterdir())  # nothing cached, no temporary left


def _serve(monkeypatch, write):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, **_: write(dst))


def _release_like(dst):
    torch.save({"model": {"score_predictor.0.w": torch.ones(2), "head.weight": torch.zeros(1000, 4)}}, dst)


@pytest.mark.promise(
    "hostile files",
    "a zoo download that is an HTML error page is not cached (`cannot read checkpoint …`); a bad file "
    "already in the cache is named with the way out (`delete PATH and download it again`)",
)
def test_a_download_is_checked_before_it_is_cached(tmp_path, monkeypatch, capsys):
    name = "dynamicvit_swin_tiny.r0_7"
    _serve(monkeypatch, lambda dst: Path(dst).write_text("<html>quota exceeded</html>"))  # an error page
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        download(name, tmp_path)
    assert not list(tmp_path.iterdir())
    _serve(monkeypatch, _release_like)
    path = download(name, tmp_path)
    assert path == tmp_path / f"{name}.pth" and f"sha256 {sha256(path)}" in capsys.readouterr().err
    path.write_bytes(b"<html>")  # a cached file gone bad: named, with the way out
    with pytest.raises(CheckpointError, match=f"delete {path}"):
        download(name, tmp_path)


@pytest.mark.promise(
    "hostile files",
    "a zoo download with the wrong digest is not cached: `SHA-256 … is not the release's …`",
)
def test_a_known_digest_is_checked(tmp_path, monkeypatch):
    name = "dynamicvit_deit_small.r0_7"
    monkeypatch.setitem(ZOO, name, dataclasses.replace(ZOO[name], sha256="0" * 64))
    _serve(monkeypatch, _release_like)
    with pytest.raises(CheckpointError, match="is not the release's 0000"):
        download(name, tmp_path)
    assert not list(tmp_path.iterdir())


ZOO_NAMES = {
    "deit": ("dynamicvit_deit_small.r0_7", {"img_size": 64, "embed_dim": 32, "depth": 4, "num_heads": 2}),
    "lvvit": ("dynamicvit_lvvit_s.r0_7", {"img_size": 64, "embed_dim": 32, "depth": 4, "num_heads": 2}),
    "convnext": ("dynamicvit_convnext_tiny.r0_7", CNX),
    "swin": ("dynamicvit_swin_tiny.r0_7", SWIN),
}


@pytest.mark.promise(
    "bad input",
    "a per-image keep mode on a head that reads patch tokens → `… a per-image keep mode needs a class-token head`",
)
@pytest.mark.parametrize("family", ["deit", "lvvit", "convnext", "swin"])
def test_release_files_through_the_commands(family, tmp_path, capsys):
    """viz, export, eval and calibrate read a release file with a zoo name of every family, as the Python
    API does."""
    _, reference = build_case(family, tmp_path)  # writes tmp_path / "release.pth"
    name, kwargs = ZOO_NAMES[family]
    common = ["--checkpoint", str(tmp_path / "release.pth"), "--model", name, "--model-kwargs", json.dumps(kwargs)]
    picture = tmp_path / "kept.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    assert main(["viz", str(tmp_path / "a.jpg"), *common, "--img-size", "64", "--out", str(picture)]) == 0
    assert picture.stat().st_size > 0
    onnx = tmp_path / "m.onnx"
    assert main(["export", *common, "--img-size", "64", "--onnx", str(onnx)]) == 0, capsys.readouterr()  # parity 1e-4
    images = tmp_path / "images"
    images.mkdir()
    for i in range(8):
        pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    data = ["--data", "images", "--data-dir", str(images), "--img-size", "64"]
    capsys.readouterr()
    assert main(["eval", *common, *data, "--json"]) == 0, capsys.readouterr()
    assert json.loads(capsys.readouterr().out)["images"] == 8
    calibrated = tmp_path / "adaptive.pth"
    code = main(["calibrate", *common, *data, "--images", "8", "--out", str(calibrated)])
    if family == "lvvit":  # its token-labelling head reads every patch token: no per-image counts
        assert code == 2 and "a per-image keep mode needs a class-token head" in capsys.readouterr().err
    else:
        assert code == 0 and calibrated.stat().st_size > 0, capsys.readouterr()
    model, _ = load_trained(tmp_path / "release.pth", model=name, model_kwargs=kwargs, img_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)  # the command's loader


def test_a_saved_layout_registers_in_one_place():
    """Loading converts a state in a registered layout for the model's class, and leaves other states alone."""
    from torch import nn

    from dynamicvit.weights.release import LAYOUTS, Layout, convert_state_dict, register_layout

    renamed = lambda state, model: {"weight": state["w"], "bias": state["b"]}  # noqa: E731
    register_layout(Layout("toy", nn.Linear, lambda state: "w" in state, renamed))
    try:
        w, b = torch.ones(2, 2), torch.zeros(2)
        assert set(convert_state_dict({"w": w, "b": b}, nn.Linear(2, 2))) == {"weight", "bias"}
        assert set(convert_state_dict({"w": w, "b": b}, nn.Conv1d(2, 2, 1))) == {"w", "b"}
    finally:
        LAYOUTS.remove("toy")
