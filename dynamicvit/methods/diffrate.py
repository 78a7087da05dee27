"""``diffrate``: Differentiable compression rates (Chen et al., ICCV 2023, arXiv 2305.17997), as the authors'
code runs it.

From the second block on, every block prunes and then merges after its attention residual:
patches are ranked by the class token's attention (mean over heads); the first ``prune_b`` are
kept, and ranks ``merge_b … prune_b`` (the least important of those) are merged, each into its
most cosine-similar token among the first ``merge_b`` (similarity of the hidden state). As in the
authors' code a merged token is the plain mean of what it holds, and its size – for proportional
attention – adds each source's size scaled by its similarity. The counts are what DiffRate learns:
per block, a softmax over candidate kept fractions for pruning and one for merging, both starting
uniform. In train mode the search runs as in the paper – nothing is removed: a token's rank gives it
the probability that the learned count exceeds it, used with a straight-through estimator as a
weight in attention and in merging, the counts forced non-increasing – and
:meth:`DiffRateMixin.method_loss` adds ``flops_weight · (MACs fraction − target)²``. With the
backbone frozen only the rate logits learn (the paper's off-the-shelf setting), for the authors' three
epochs at their learning rate (:meth:`DiffRate.authors_recipe`); the network can be fine-tuned after. At
inference the expected counts are rounded and tokens are really removed.

The knob is the keep rate ρ: the search's MACs target is the cost of keeping ``ρ ** (3 b / (L − 1))``
of the patches after block ``b``, and :meth:`DiffRate.macs_fraction` reports that target, so that
:func:`~dynamicvit.methods.set_budget` sets it before any search.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.interfaces import Method, find_reducer
from dynamicvit.core.merging import Merge, attend, slot_sums, soft_merge
from dynamicvit.core.predictor import check_keep_rate
from dynamicvit.core.tokens import attention_output, attention_qkv, gather_tokens, residual_mlp
from dynamicvit.methods.common import InBlockMixin, reduce_vit, reduction_layers
from dynamicvit.methods.registry import register_method

__all__ = ["DiffRate", "DiffRateMixin", "RateSearch", "survival"]

CANDIDATES = 49  # kept fractions 1, 48/49, …, 1/49 (the paper: 196, 192, …, 4 tokens)
SEARCH_EPOCHS = 3  # the authors search the rates for 3 epochs


def survival(logits: torch.Tensor, expected: torch.Tensor, rank: torch.Tensor, n: int) -> torch.Tensor:
    """Per token, the probability that the learned count exceeds its rank (B, n), straight-through:
    the forward value is 1 for ranks below the rounded expected count (what inference keeps), else 0.

    Args:
        logits: the block's logits over the candidate fractions (K,).
        expected: the block's expected kept fraction (:meth:`RateSearch.expected`).
        rank: each token's rank (0 = most important) (B, n).
        n: patches at the block's input.
    """
    fractions = torch.linspace(1, 1 / CANDIDATES, CANDIDATES, device=logits.device)
    soft = (logits.float().softmax(dim=0) * (fractions * n > rank[..., None].float())).sum(dim=-1)
    hard = (rank < (expected.detach() * n).round().clamp_min(1)).float()
    return hard + soft - soft.detach()


class RateSearch(nn.Module):
    """DiffRate's learnable rates: per reducing block, logits over candidate kept fractions for pruning
    and for merging (its only parameters in the off-the-shelf search)."""

    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.prune = nn.Parameter(torch.zeros(blocks, CANDIDATES))
        self.merge = nn.Parameter(torch.zeros(blocks, CANDIDATES))

    def expected(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected kept fractions after pruning and after merging, per block: a block prunes at most what
        the block before it left, and merges at most what it pruned to."""
        grid = torch.linspace(1, 1 / CANDIDATES, CANDIDATES, device=self.prune.device)
        raw_prune = (self.prune.float().softmax(-1) * grid).sum(-1)
        raw_merge = (self.merge.float().softmax(-1) * grid).sum(-1)
        prune, merge, left = [], [], raw_prune.new_ones(())
        for p, m in zip(raw_prune, raw_merge, strict=True):
            prune.append(torch.minimum(p, left))
            merge.append(torch.minimum(m, prune[-1]))
            left = merge[-1]
        return torch.stack(prune), torch.stack(merge)


class DiffRateMixin(InBlockMixin):
    method = "diffrate"
    rate_search: RateSearch
    flops_weight = 100.0  # the paper's 5·(ΔGFLOPs)² on DeiT-S (4.6 G) is ≈ 100·(Δ fraction)²

    @property
    def keep_rate(self) -> float:
        """ρ: sets the search's MACs target (the cost of keeping ``ρ ** (3b / (L − 1))`` after block b)."""
        return self._keep_rate

    @keep_rate.setter
    def keep_rate(self, value: float) -> None:
        self._keep_rate = check_keep_rate(value)
        depth = len(self.blocks)
        kept = torch.tensor([self._keep_rate ** (3 * b / (depth - 1)) for b in range(1, depth)])
        self.macs_target = float(self._cost(kept, kept))

    def keep_targets(self) -> list[float]:
        return []  # the search's own loss holds the budget, not per-stage keep ratios

    def counts(self, n: int) -> list[tuple[int, int]]:
        """Patches kept after pruning and after merging in blocks 1 … L − 1, for ``n`` input patches (read
        from the rates when the model last entered eval mode or its keep rate was set: plain numbers, so
        that an exported graph holds them as constants)."""
        return [(max(1, round(p * n)), max(1, round(m * n))) for p, m in self._fractions]

    def _read_rates(self) -> None:
        with torch.no_grad():
            prune, merge = self.rate_search.expected()
        self._fractions = list(zip(prune.tolist(), merge.tolist(), strict=True))

    def train(self, mode: bool = True):
        """Switch mode; entering eval mode fixes the counts the search has reached."""
        super().train(mode)
        self._read_rates()
        return self

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        n = num_patches or self.num_patches
        return [n] + [m for _, m in self.counts(n)]

    def _block_macs(self, n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
        """A block's MACs with attention on ``n_in`` tokens and the MLP on ``n_out``."""
        c, hidden = self.embed_dim, self.blocks[0].mlp.fc1.out_features
        return n_in * 4 * c * c + 2 * n_in * n_in * c + n_out * 2 * c * hidden

    def _dense_block_macs(self) -> float:
        """The blocks' MACs on every token."""
        full = torch.tensor(float(self.num_patches + self.num_prefix_tokens))
        return float(self._block_macs(full, full)) * len(self.blocks)

    def _cost(self, prune: torch.Tensor, merge: torch.Tensor) -> torch.Tensor:
        """The blocks' MACs at kept fractions ``prune``/``merge`` per block, as a fraction of the dense blocks'."""
        n, prefix = self.num_patches, self.num_prefix_tokens
        full = torch.tensor(float(n + prefix), device=prune.device)
        tokens = prefix + merge.float() * n
        inputs = torch.cat([full[None], tokens[:-1]])
        dense = self._block_macs(full, full)
        return (dense + self._block_macs(inputs, tokens).sum()) / (dense * len(self.blocks))

    def no_weight_decay(self) -> set[str]:
        """timm's set plus the rate logits (the paper searches without weight decay)."""
        return {*super().no_weight_decay(), "rate_search.prune", "rate_search.merge"}

    def method_loss(self, *_) -> dict[str, torch.Tensor]:
        """The search's MACs term (train mode): ``flops_weight · (fraction − target)²``."""
        fraction = self._cost(*self.rate_search.expected())
        return {"flops": self.flops_weight * (fraction - self.macs_target) ** 2}

    def forward_blocks(self, x, decisions, grid):
        """Tokens are mixtures of patches: no kept indices to report."""
        if self.training:
            return self._search(x), []
        prefix, size = self.num_prefix_tokens, x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        x = self.blocks[0](x)
        for blk, (keep, merge) in zip(self.blocks[1:], self.counts(x.shape[1] - prefix), strict=True):
            x, scores = _attend_with_class_scores(blk, x, size, prefix)
            order = scores.argsort(dim=1, descending=True)[:, :keep]
            x = torch.cat([x[:, :prefix], gather_tokens(x[:, prefix:], order)], dim=1)
            size = torch.cat([size[:, :prefix], gather_tokens(size[:, prefix:], order)], dim=1)
            if merge < keep:
                x, size = _mean_merge(x, size, prefix, merge)
            x = residual_mlp(blk, x)
        return x, []

    def _search(self, x: torch.Tensor) -> torch.Tensor:
        """The train-mode forward: every token kept, weighted by the probability that it survives."""
        prefix, n = self.num_prefix_tokens, x.shape[1] - self.num_prefix_tokens
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        alive = torch.ones_like(size)
        x = self.blocks[0](x)
        expected_prune, expected_merge = self.rate_search.expected()
        for b, blk in enumerate(self.blocks[1:]):
            x, probs, _, _ = attend(blk, x, size * alive.clamp_min(1e-6), probs=True)
            scores = probs[:, :, 0, prefix:].mean(dim=1) * alive[:, prefix:, 0]
            rank = torch.zeros_like(scores, dtype=torch.long)
            rank = rank.scatter(
                1, scores.argsort(dim=1, descending=True), torch.arange(n, device=x.device).expand_as(rank)
            )
            pruned = survival(self.rate_search.prune[b], expected_prune[b], rank, n)
            kept = torch.minimum(survival(self.rate_search.merge[b], expected_merge[b], rank, n), pruned)
            # each surviving token outside the kept set sends ``pruned − kept`` of itself and stays with ``kept``
            x, size = soft_merge(x, size, (alive[:, prefix:, 0] * (pruned - kept)).clamp_min(0), kept, prefix,
                                 mean=True)  # fmt: skip
            alive = torch.cat([alive[:, :prefix], alive[:, prefix:] * kept[..., None]], dim=1)
            x = residual_mlp(blk, x)
        return x


def _attend_with_class_scores(blk: nn.Module, x: torch.Tensor, size: torch.Tensor, prefix: int):
    """The attention residual (fused SDPA) and the class token's attention to the patches, mean over heads."""
    attn, h = blk.attn, blk.norm1(x)
    q, k, v = attention_qkv(attn, h)
    bias = size[..., 0].log()[:, None, None, :]
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=attn.scale)
    cls = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).float() + bias
    x = x + blk.drop_path1(blk.ls1(attention_output(attn, h, heads)))
    return x, cls.softmax(dim=-1)[:, :, 0, prefix:].mean(dim=1)


def _mean_merge(x: torch.Tensor, size: torch.Tensor, prefix: int, merge: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' merge of patches in rank order: the first ``merge`` stay; each later one joins its most
    cosine-similar of them; a slot is the plain mean of its tokens, its size adds the sources' sizes scaled
    by their similarity."""
    patches = x[:, prefix:]
    keys = F.normalize(patches.detach().float(), dim=-1)
    best, target = (keys[:, merge:] @ keys[:, :merge].transpose(1, 2)).max(dim=-1)
    b, n = patches.shape[:2]
    ranks = torch.arange(n, device=x.device).expand(b, n)
    plan = Merge(ranks[:, :merge], ranks[:, merge:], target).shifted(prefix)
    scale = torch.cat([torch.ones_like(size[:, : prefix + merge]), best.clamp(0, 1)[..., None]], dim=1)
    counts = slot_sums(torch.ones_like(size), plan)
    return slot_sums(x, plan) / counts.to(x.dtype), slot_sums(size * scale, plan)


@register_method
class DiffRate(Method):
    name = "diffrate"
    label = "DiffRate (searched rates)"
    summary = "per-block prune and merge counts searched for the MACs target"
    paper = "2305.17997"
    learned = True
    keeps_subset = False

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **_) -> nn.Module:
        reduction_layers(model, keep_rate, prune_layers)  # an unsupported model is refused before it is changed
        model.rate_search = RateSearch(len(model.blocks) - 1).to(next(model.parameters()).device)
        model.register_load_state_dict_post_hook(lambda module, _: module._read_rates())
        model = reduce_vit(model, DiffRateMixin, keep_rate, prune_layers)  # setting ρ sets the MACs target
        model._read_rates()
        return model

    @classmethod
    def searched(cls, model: nn.Module) -> dict:
        """The per-block patch counts the search settled on, after pruning and after merging, and those of
        its uniform start."""
        reducer = find_reducer(model)
        start = RateSearch(len(reducer.blocks) - 1)
        n = reducer.num_patches
        with torch.no_grad():
            fractions = [t.tolist() for t in start.expected()]
        begin = [(max(1, round(p * n)), max(1, round(m * n))) for p, m in zip(*fractions, strict=True)]
        logits = {k: v.tolist() for k, v in reducer.rate_search.state_dict().items()}
        counts = reducer.counts(n)
        return {
            "prune": [p for p, _ in counts],
            "merge": [m for _, m in counts],
            "start_prune": [p for p, _ in begin],
            "start_merge": [m for _, m in begin],
            "logits": logits,
        }

    @classmethod
    def load_searched(cls, model: nn.Module, searched: dict) -> None:
        """Put the searched rate logits of :meth:`searched` back into a fresh ``model``."""
        reducer = find_reducer(model)
        reducer.rate_search.load_state_dict({k: torch.tensor(v) for k, v in searched["logits"].items()})
        reducer._read_rates()

    @classmethod
    def macs_fraction(cls, model: nn.Module, dense_macs: int) -> float:
        """The MACs fraction the search aims at: the dense model's MACs outside the blocks plus the target's
        share of the blocks' (the counts themselves are only known once searched)."""
        reducer = find_reducer(model)
        blocks = float(reducer._dense_block_macs())
        return (dense_macs - blocks + reducer.macs_target * blocks) / dense_macs

    @classmethod
    def authors_recipe(cls, cfg) -> dict:
        """The authors' search: :data:`SEARCH_EPOCHS` epochs of the rates alone (the backbone frozen) at lr 0.01
        falling to 0.001 (cosine), no warm-up; a recipe that fine-tunes the backbone does so after the search,
        for its own epochs, at its own backbone learning rate."""
        lr = 0.01
        recipe = {"lr": lr, "min_lr": 0.001, "warmup_epochs": 0.0}
        if cfg.schedule.freeze_backbone_epochs >= cfg.schedule.epochs:  # only the rates learn
            recipe.update(epochs=SEARCH_EPOCHS, freeze_backbone_epochs=float(SEARCH_EPOCHS))
        else:
            recipe.update(
                epochs=cfg.schedule.epochs + SEARCH_EPOCHS,
                freeze_backbone_epochs=cfg.schedule.freeze_backbone_epochs + SEARCH_EPOCHS,
            )
        if cfg.schedule.backbone_lr_scale is not None:
            recipe["backbone_lr_scale"] = cfg.schedule.lr * cfg.schedule.backbone_lr_scale / lr
        return recipe
