"""Splits: fractions, determinism, stratified shares, group isolation, readable errors."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polylora.data.example import Example
from polylora.data.splits import largest_remainder, quantile_bins, split_examples
from polylora.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def make_examples(n: int, **field_fns) -> list[Example]:
    return [
        Example(
            id=f"ex-{i:04d}",
            prompt=f"p{i}",
            response=f"r{i}",
            group=f"g{i % 7}",
            fields={name: fn(i) for name, fn in field_fns.items()},
        )
        for i in range(n)
    ]


def ids(items: list[Example]) -> list[str]:
    return [ex.id for ex in items]


def test_random_split_counts_and_coverage() -> None:
    examples = make_examples(101)
    s = split_examples(examples, 0.8, 0.1, 0.1, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (81, 10, 10)
    assert sorted(ids(s.train) + ids(s.val) + ids(s.test)) == sorted(ids(examples))
    report = s.report()
    assert report["counts"] == {"train": 81, "val": 10, "test": 10}
    assert report["total"] == 101 and report["strategy"] == "random"


def test_deterministic_and_independent_of_input_order() -> None:
    examples = make_examples(60, score=lambda i: (i * 37) % 11)
    shuffled = list(examples)
    random.Random(5).shuffle(shuffled)
    for kwargs in ({}, {"stratify_by": "score"}, {"group_by": "group"}):
        a = split_examples(examples, 0.6, 0.2, 0.2, seed=3, **kwargs)
        b = split_examples(shuffled, 0.6, 0.2, 0.2, seed=3, **kwargs)
        assert [ids(a.train), ids(a.val), ids(a.test)] == [ids(b.train), ids(b.val), ids(b.test)]
    c = split_examples(examples, 0.6, 0.2, 0.2, seed=4)
    assert ids(c.train) != ids(split_examples(examples, 0.6, 0.2, 0.2, seed=3).train)


@pytest.mark.parametrize(
    ("fractions", "bad"),
    [
        ((0.8, 0.1, 0.2), "sum to 1"),
        ((0.9, 0.2, -0.1), "data.split.test"),
        ((float("nan"), 0.5, 0.5), "data.split.train"),
        ((0.5, "0.5", 0.0), "data.split.val"),
    ],
)
def test_bad_fractions_raise_config_error(fractions: tuple, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"data\.split") as err:
        split_examples(make_examples(10), *fractions, seed=0)
    assert bad in str(err.value)
    assert "\n" not in str(err.value)


def test_fraction_sum_tolerance_and_empty_splits() -> None:
    s = split_examples(make_examples(10), 0.7 + 5e-7, 0.3, 0.0, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (7, 3, 0)
    only_train = split_examples(make_examples(10), 1.0, 0.0, 0.0, seed=0, group_by="group")
    assert len(only_train.train) == 10 and not only_train.val and not only_train.test


def test_largest_remainder_rounding() -> None:
    assert largest_remainder(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert largest_remainder(7, (0.8, 0.1, 0.1)) == [5, 1, 1]
    assert largest_remainder(3, (0.0, 0.5, 0.5)) == [0, 2, 1]
    for n in range(0, 40):
        counts = largest_remainder(n, (0.55, 0.3, 0.15))
        assert sum(counts) == n
        assert all(abs(c - n * f) < 1 for c, f in zip(counts, (0.55, 0.3, 0.15), strict=True))


def test_quantile_bins_equal_counts_and_ties() -> None:
    values = [float(v) for v in range(20)]
    random.Random(0).shuffle(values)
    bins = quantile_bins(values, 4)
    assert Counter(bins) == {0: 5, 1: 5, 2: 5, 3: 5}
    assert all(b == int(v) * 4 // 20 for v, b in zip(values, bins, strict=True))
    tied = quantile_bins([1, 1, 1, 1, 2, 3, 4, 5, 6, 7], 4)
    assert len({tied[i] for i in range(4)}) == 1  # ties never straddle bins
    assert quantile_bins([3, 1, 3, 2], 4) == [2, 0, 2, 1]  # few distinct values: one bin each


@pytest.mark.parametrize("n", [37, 80, 203])
@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.6, 0.25, 0.15), (0.7, 0.3, 0.0)])
def test_stratified_numeric_quartile_share_within_one(n: int, fractions: tuple) -> None:
    # Distinct engagement scores 0..n-1 in scrambled order: quartile q holds ids with
    # floor(score * 4 / n) == q.
    order = list(range(n))
    random.Random(n).shuffle(order)
    examples = make_examples(n, engagement=lambda i: float(order[i]) * 1.5)
    s = split_examples(examples, *fractions, seed=11, stratify_by="engagement")
    quartile = {ex.id: int(ex.fields["engagement"] / 1.5) * 4 // n for ex in examples}
    size = Counter(quartile.values())
    for name, frac in zip(SPLITS, fractions, strict=True):
        got = Counter(quartile[ex.id] for ex in getattr(s, name))
        for q in range(4):
            assert abs(got[q] - frac * size[q]) < 1, (name, q, got[q], frac * size[q])
        assert abs(len(getattr(s, name)) - frac * n) < 1  # totals stay near the target too
    assert sum(s.report()["counts"].values()) == n
    assert s.report()["strategy"] == "stratified" and len(s.report()["strata"]) == 4


def test_stratified_categorical_and_n_bins() -> None:
    examples = make_examples(90, label=lambda i: ["a", "b", "c", "c", "c"][i % 5])
    s = split_examples(examples, 0.5, 0.25, 0.25, seed=1, stratify_by="label")
    total = Counter(ex.fields["label"] for ex in examples)
    for name, frac in zip(SPLITS, (0.5, 0.25, 0.25), strict=True):
        got = Counter(ex.fields["label"] for ex in getattr(s, name))
        assert all(abs(got[k] - frac * total[k]) < 1 for k in total)
    deciles = split_examples(
        make_examples(100, x=lambda i: i), 0.8, 0.1, 0.1, seed=0, stratify_by="x", n_bins=10
    )
    assert len(deciles.report()["strata"]) == 10
    with pytest.raises(ConfigError, match=r"data\.split\.n_bins"):
        split_examples(examples, 0.8, 0.1, 0.1, seed=0, stratify_by="label", n_bins=0)


def test_group_split_keeps_groups_whole_and_reports_them() -> None:
    examples = make_examples(140)  # 7 groups of 20
    s = split_examples(examples, 0.6, 0.2, 0.2, seed=2, group_by="group")
    seen = {name: {ex.group for ex in getattr(s, name)} for name in SPLITS}
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"])
    assert not seen["val"] & seen["test"]
    report = s.report()
    assert report["groups"] == {name: len(seen[name]) for name in SPLITS}
    for name, frac in zip(SPLITS, (0.6, 0.2, 0.2), strict=True):
        assert abs(report["counts"][name] - frac * 140) <= 20  # within one group of the target
    assert all(report["groups"][name] >= 1 for name in SPLITS)


def test_group_split_by_field_and_every_requested_split_gets_a_group() -> None:
    # Three huge groups with 0.8/0.1/0.1: greedy alone would put all in train.
    examples = make_examples(300, reporter=lambda i: f"r{i % 3}")
    s = split_examples(examples, 0.8, 0.1, 0.1, seed=0, group_by="reporter")
    assert s.report()["groups"] == {"train": 1, "val": 1, "test": 1}


def test_group_split_too_few_groups_is_a_readable_data_error() -> None:
    examples = make_examples(20, reporter=lambda i: f"r{i % 2}")
    with pytest.raises(DataError) as err:
        split_examples(examples, 0.8, 0.1, 0.1, seed=0, group_by="reporter")
    message = str(err.value)
    assert "at least 3 groups for train/val/test, found 2" in message
    assert "data.split.val/test to 0" in message
    assert "\n" not in message
    ok = split_examples(examples, 0.5, 0.5, 0.0, seed=0, group_by="reporter")
    assert ok.report()["groups"] == {"train": 1, "val": 1, "test": 0}


@pytest.mark.parametrize("kwargs", [{"stratify_by": "score"}, {"group_by": "score"}])
def test_missing_field_names_field_example_and_available(kwargs: dict) -> None:
    examples = make_examples(10, score=lambda i: i, lang=lambda i: "en")
    broken = Example(id="ex-bad", prompt="p", response="r", fields={"lang": "de"})
    with pytest.raises(DataError) as err:
        split_examples([*examples, broken], 0.8, 0.1, 0.1, seed=0, **kwargs)
    message = str(err.value)
    assert "'score'" in message and "'ex-bad'" in message and "lang" in message


def test_group_by_group_requires_example_group() -> None:
    examples = [Example(id=f"e{i}", prompt="p", response="r") for i in range(5)]
    with pytest.raises(DataError, match="'group' is missing from example 'e0'"):
        split_examples(examples, 0.8, 0.2, 0.0, seed=0, group_by="group")


def test_stratify_and_group_together_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot both be set"):
        split_examples(make_examples(10), 0.8, 0.1, 0.1, 0, stratify_by="x", group_by="group")


@settings(max_examples=60, deadline=None, database=None)
@given(
    group_sizes=st.lists(st.integers(min_value=1, max_value=12), min_size=3, max_size=25),
    fractions=st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.3, 0.2), (0.7, 0.3, 0.0), (1.0, 0, 0)]),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_group_split_property_no_leak_no_loss(
    group_sizes: list[int], fractions: tuple, seed: int
) -> None:
    examples = [
        Example(id=f"g{g}-{j}", prompt="p", response="r", group=f"g{g}")
        for g, size in enumerate(group_sizes)
        for j in range(size)
    ]
    s = split_examples(examples, *fractions, seed=seed, group_by="group")
    all_ids = ids(s.train) + ids(s.val) + ids(s.test)
    assert sorted(all_ids) == sorted(ids(examples))  # nothing lost, nothing duplicated
    owner: dict[str, str] = {}
    for name in SPLITS:
        for ex in getattr(s, name):
            assert owner.setdefault(ex.group, name) == name  # one split per group
    for name, frac in zip(SPLITS, fractions, strict=True):
        assert (len(getattr(s, name)) > 0) == (frac > 0)  # requested splits are non-empty
        assert math.isclose(s.report()["fractions"][name], frac)
