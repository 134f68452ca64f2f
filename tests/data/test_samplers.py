"""GroupBalancedBatchSampler: distinct groups per batch, full coverage, seeded epoch orders."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from torch.utils.data import DataLoader

from polylora.data.example import Example
from polylora.data.samplers import GroupBalancedBatchSampler
from polylora.errors import ConfigError


def uneven_groups(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    groups = [f"g{g}" for g in range(12) for _ in range(rng.randint(1, 15))]
    rng.shuffle(groups)
    return groups


def flatten(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7])
def test_batches_hold_distinct_groups_while_enough_remain(batch_size: int) -> None:
    groups = uneven_groups()
    sampler = GroupBalancedBatchSampler(groups, batch_size=batch_size, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        used = Counter()
        for batch in sampler:
            # groups that still had examples when this batch was drawn
            remaining = {g for g, n in Counter(groups).items() if n > used[g]}
            if len(remaining) >= batch_size:
                batch_groups = [groups[i] for i in batch]
                assert len(set(batch_groups)) == len(batch_groups), (epoch, batch_groups)
            used.update(groups[i] for i in batch)


@pytest.mark.parametrize("batch_size", [1, 4, 5, 64])
def test_every_index_exactly_once_per_epoch_and_len(batch_size: int) -> None:
    groups = uneven_groups(2)
    sampler = GroupBalancedBatchSampler(groups, batch_size=batch_size, seed=0)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(flatten(batches)) == list(range(len(groups)))
        assert len(batches) == len(sampler)
        assert all(len(b) == batch_size for b in batches[:-1])


def test_drop_last_drops_only_the_short_batch() -> None:
    groups = uneven_groups(3)
    sampler = GroupBalancedBatchSampler(groups, batch_size=5, seed=0, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(groups) // 5
    assert all(len(b) == 5 for b in batches)
    assert len(set(flatten(batches))) == len(flatten(batches))


def test_order_changes_with_epoch_and_seed_and_repeats_for_same_pair() -> None:
    groups = uneven_groups()
    a = GroupBalancedBatchSampler(groups, batch_size=4, seed=7)
    b = GroupBalancedBatchSampler(groups, batch_size=4, seed=7)
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second
    b.set_epoch(1)
    assert list(b) == second  # same seed + epoch -> same order
    a.set_epoch(0)
    assert list(a) == first
    other_seed = GroupBalancedBatchSampler(groups, batch_size=4, seed=8)
    assert list(other_seed) != first


def test_equal_groups_give_one_example_per_group_in_every_batch() -> None:
    sampler = GroupBalancedBatchSampler(["a", "b", "c"] * 4, batch_size=3, seed=0)
    for batch in sampler:
        assert len({i % 3 for i in batch}) == 3


def test_from_examples_and_dataloader_integration() -> None:
    examples = [
        Example(id=f"e{i}", prompt="p", response="r", group=None if i % 5 == 0 else f"g{i % 3}")
        for i in range(20)
    ]
    sampler = GroupBalancedBatchSampler.from_examples(examples, batch_size=4, seed=0)
    loader = DataLoader(list(range(20)), batch_sampler=sampler)
    seen = [int(x) for batch in loader for x in batch]
    assert sorted(seen) == list(range(20))


def test_empty_and_invalid() -> None:
    empty = GroupBalancedBatchSampler([], batch_size=2, seed=0)
    assert list(empty) == [] and len(empty) == 0
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="batch size"):
            GroupBalancedBatchSampler(["a"], batch_size=bad, seed=0)  # type: ignore[arg-type]
