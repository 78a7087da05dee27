import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamicvit.core.tokens import (
    forced_positions,
    gather_tokens,
    index_mask,
    iter_stages,
    mixed_class,
    patch_tokens,
    per_image,
    with_prefix,
)


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 4), n=st.integers(1, 12), k=st.integers(0, 12))
def test_token_gather_matches_indexing(b, n, k):
    k = min(k, n)
    x = torch.randn(b, n, 5)
    index = torch.stack([torch.randperm(n)[:k] for _ in range(b)])
    picked = gather_tokens(x, index)
    assert torch.equal(picked, torch.stack([x[i, index[i]] for i in range(b)]))


@settings(max_examples=15, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 10), k=st.integers(0, 10))
def test_index_mask_marks_exactly_the_kept_tokens(b, n, k):
    k = min(k, n)
    index = torch.stack([torch.randperm(n)[:k] for _ in range(b)])
    ragged = [torch.randperm(n)[: torch.randint(0, n + 1, ()).item()] for _ in range(b)]
    for indices in (index, ragged):
        mask = index_mask(indices, n)
        assert mask.shape == (b, n)
        for i in range(b):
            assert mask[i].nonzero().squeeze(1).tolist() == sorted(indices[i].tolist())


def test_per_image_splits_rows_by_image():
    values, seg = torch.tensor([4, 5, 6, 7, 8]), torch.tensor([0, 0, 2, 2, 2])
    assert [v.tolist() for v in per_image(values, seg, 3)] == [[4, 5], [], [6, 7, 8]]


def test_prefix_tokens_stay_in_front():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    patches = patch_tokens(x, 2)
    assert patches.is_contiguous() and torch.equal(patches, x[:, 2:])
    out = with_prefix(x, 2, patches[:, [2, 0]])
    assert torch.equal(out[:, :2], x[:, :2]) and torch.equal(out[:, 2:], x[:, [4, 2]])


def test_forced_positions_map_grid_indices_to_alive_positions():
    alive = torch.tensor([[7, 2, 5], [0, 1, 3]])  # grid indices of the alive tokens
    assert torch.equal(forced_positions(alive, torch.tensor([[5, 7], [3, 0]]), 8), torch.tensor([[2, 0], [2, 0]]))
    assert torch.equal(forced_positions(None, torch.tensor([[4]]), 8), torch.tensor([[4]]))
    with pytest.raises(ValueError, match="nested"):
        forced_positions(alive, torch.tensor([[1], [1]]), 8)  # 1 was dropped for image 0
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        forced_positions(alive, torch.tensor([[8], [0]]), 8)


def test_stage_iterator_marks_the_blocks_after_each_reduction():
    assert list(iter_stages("abcde", [1, 3])) == [(None, "a"), (0, "b"), (None, "c"), (1, "d"), (None, "e")]


def test_class_swap_is_cached_per_pair():
    class Mixin:
        pass

    one, two = mixed_class(Mixin, torch.nn.Linear, "X"), mixed_class(Mixin, torch.nn.Linear, "X")
    assert one is two and one.__name__ == "XLinear" and issubclass(one, torch.nn.Linear)
