"""Train/val/test splits: plain random, stratified by a field, or group-aware (no group leakage).

Every split is deterministic for a seed and independent of the input order (examples are
sorted by id before shuffling), so two runs with the same data and seed see the same split.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from polylora.data.example import Example
from polylora.errors import DataError, Problems, raise_problems

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
_TOLERANCE = 1e-6


@dataclass
class Splits:
    """The three splits plus how they were made (for logging alongside the run)."""

    train: list[Example]
    val: list[Example]
    test: list[Example]
    strategy: str = "random"
    seed: int = 0
    by: str | None = None
    groups: dict[str, list[str]] | None = None
    strata: dict[str, dict[str, int]] | None = None
    fractions: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, list[Example]]:
        """The splits keyed by name, in train/val/test order."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def report(self) -> dict[str, Any]:
        """Counts per split (and groups per split, strata per split when used), JSON-friendly."""
        counts = {name: len(items) for name, items in self.as_dict().items()}
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "seed": self.seed,
            "total": sum(counts.values()),
            "counts": counts,
            "fractions": dict(self.fractions),
        }
        if self.by is not None:
            out["by"] = self.by
        if self.groups is not None:
            out["groups"] = {name: len(g) for name, g in self.groups.items()}
        if self.strata is not None:
            out["strata"] = {key: dict(c) for key, c in self.strata.items()}
        return out


def split_examples(
    examples: Sequence[Example],
    train: float,
    val: float,
    test: float,
    seed: int,
    stratify_by: str | None = None,
    group_by: str | None = None,
    n_bins: int = 4,
) -> Splits:
    """Split examples into train/val/test by the given fractions.

    ``stratify_by`` names a field whose distribution is kept equal across splits (numeric fields
    are binned into ``n_bins`` quantiles, categorical ones used as is). ``group_by`` names a
    field (``"group"`` means ``Example.group``) whose values never straddle two splits. A
    fraction of 0 gives an empty split.
    """
    raise_problems(check_split(train, val, test, stratify_by, group_by, n_bins))
    fractions = (float(train), float(val), float(test))
    ordered = sorted(examples, key=_order_key)
    rng = random.Random(seed)
    if group_by is not None:
        return _group_split(ordered, fractions, rng, seed, group_by)
    if stratify_by is not None:
        return _stratified_split(ordered, fractions, rng, seed, stratify_by, n_bins)
    rng.shuffle(ordered)
    counts = largest_remainder(len(ordered), fractions)
    parts = _cut(ordered, counts)
    return Splits(parts[0], parts[1], parts[2], strategy="random", seed=seed,
                  fractions=_named(fractions))


def largest_remainder(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer counts summing to ``n`` with each within one of ``n * fraction`` (Hamilton method).

    Used so that small datasets and small strata still get exactly the requested shares.
    """
    return _allocate(n, fractions, priority=None)


def quantile_bins(values: Sequence[float], n_bins: int) -> list[int]:
    """Bin index (0..n_bins-1) of each value by rank, so the bins hold equal counts.

    Tied values always share a bin. When there are at most ``n_bins`` distinct values each
    distinct value is its own bin (binning would only merge them).
    """
    distinct = sorted(set(values))
    if len(distinct) <= n_bins:
        index = {v: i for i, v in enumerate(distinct)}
        return [index[v] for v in values]
    n = len(values)
    first_rank: dict[float, int] = {}
    for rank, v in enumerate(sorted(values)):
        first_rank.setdefault(v, rank)
    return [min(n_bins - 1, first_rank[v] * n_bins // n) for v in values]


# --- strategies ---------------------------------------------------------------------------


def _stratified_split(
    ordered: list[Example],
    fractions: tuple[float, float, float],
    rng: random.Random,
    seed: int,
    name: str,
    n_bins: int,
) -> Splits:
    raw = [_field_value(ex, name) for ex in ordered]
    keys = _strata_keys(raw, name, n_bins)
    strata: dict[str, list[Example]] = {}
    for ex, key in zip(ordered, keys, strict=True):
        strata.setdefault(key, []).append(ex)
    parts: list[list[Example]] = [[], [], []]
    assigned = [0, 0, 0]
    seen = 0
    per_stratum: dict[str, dict[str, int]] = {}
    for key in sorted(strata, key=_stratum_sort_key):
        members = strata[key]
        rng.shuffle(members)
        seen += len(members)
        # Within one of the stratum's target per split; ties in rounding go to the split that
        # is furthest below its overall target, so the totals also stay close to the fractions.
        deficits = [seen * f - a for f, a in zip(fractions, assigned, strict=True)]
        counts = _allocate(len(members), fractions, priority=deficits)
        for i, chunk in enumerate(_cut(members, counts)):
            parts[i].extend(chunk)
            assigned[i] += len(chunk)
        per_stratum[key] = dict(zip(SPLIT_NAMES, counts, strict=True))
    for part in parts:
        part.sort(key=_order_key)
        rng.shuffle(part)
    return Splits(
        parts[0], parts[1], parts[2],
        strategy="stratified",
        seed=seed,
        by=name,
        strata=per_stratum,
        fractions=_named(fractions),
    )


def _group_split(
    ordered: list[Example],
    fractions: tuple[float, float, float],
    rng: random.Random,
    seed: int,
    name: str,
) -> Splits:
    groups: dict[str, list[Example]] = {}
    for ex in ordered:
        groups.setdefault(_hashable_key(_field_value(ex, name)), []).append(ex)
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    if ordered and len(groups) < len(wanted):
        names = [SPLIT_NAMES[i] for i in wanted]
        # The largest requested split keeps its fraction; the others are the ones to drop.
        keep = max(wanted, key=lambda i: fractions[i])
        others = "/".join(SPLIT_NAMES[i] for i in wanted if i != keep)
        raise DataError(
            f"group split by {name!r} needs at least {len(wanted)} groups for "
            f"{'/'.join(names)}, found {len(groups)}; "
            f"lower data.split.{others} to 0 or add groups"
        )
    # Random group order (seeded) so different seeds give different assignments; each group
    # goes to the requested split furthest below its target example count.
    order = sorted(groups)
    rng.shuffle(order)
    n = len(ordered)
    targets = [f * n for f in fractions]
    counts = [0, 0, 0]
    members: list[list[str]] = [[], [], []]
    for pos, key in enumerate(order):
        empty = [i for i in wanted if not members[i]]
        remaining = len(order) - pos
        # Reserve the last groups for requested splits that would otherwise stay empty.
        candidates = empty if empty and remaining <= len(empty) else wanted
        best = max(candidates, key=lambda i: (targets[i] - counts[i], fractions[i], -i))
        members[best].append(key)
        counts[best] += len(groups[key])
    sizes = {key: len(items) for key, items in groups.items()}
    _rebalance(members, sizes, counts, targets)
    parts: list[list[Example]] = [[], [], []]
    for i in range(3):
        for key in members[i]:
            parts[i].extend(groups[key])
        parts[i].sort(key=_order_key)
        rng.shuffle(parts[i])
    return Splits(
        parts[0], parts[1], parts[2],
        strategy="group",
        seed=seed,
        by=name,
        groups={SPLIT_NAMES[i]: sorted(members[i]) for i in range(3)},
        fractions=_named(fractions),
    )


def _rebalance(
    members: list[list[str]],
    sizes: dict[str, int],
    counts: list[int],
    targets: Sequence[float],
    max_swap_groups: int = 400,
) -> None:
    """Improve a greedy group assignment in place by single moves and pairwise swaps.

    Greedy filling in random order can overshoot by up to one large group; moving or swapping
    groups between splits while that lowers the total distance to the targets fixes most of
    it. A split is never emptied, and swaps are skipped for very many groups (then each group
    is small relative to the splits and greedy is already close).
    """

    def error(i: int, count: float) -> float:
        return abs(count - targets[i])

    allow_swaps = sum(len(m) for m in members) <= max_swap_groups
    for _ in range(100):
        best_gain = 1e-9
        best_step: tuple[int, int, int, int | None] | None = None
        for a in range(3):
            for b in range(3):
                if a == b or not members[a] or targets[b] <= 0:
                    continue
                before = error(a, counts[a]) + error(b, counts[b])
                for g_pos, g in enumerate(members[a]):
                    if len(members[a]) > 1:  # move g from a to b
                        gain = (
                            before - error(a, counts[a] - sizes[g]) - error(b, counts[b] + sizes[g])
                        )
                        if gain > best_gain:
                            best_gain, best_step = gain, (a, g_pos, b, None)
                    if not allow_swaps or b < a:
                        continue
                    for h_pos, h in enumerate(members[b]):  # swap g (in a) with h (in b)
                        delta = sizes[g] - sizes[h]
                        gain = before - error(a, counts[a] - delta) - error(b, counts[b] + delta)
                        if gain > best_gain:
                            best_gain, best_step = gain, (a, g_pos, b, h_pos)
        if best_step is None:
            return
        a, g_pos, b, swap_pos = best_step
        g = members[a].pop(g_pos)
        counts[a] -= sizes[g]
        if swap_pos is not None:
            h = members[b].pop(swap_pos)
            counts[b] -= sizes[h]
            members[a].append(h)
            counts[a] += sizes[h]
        members[b].append(g)
        counts[b] += sizes[g]


# --- helpers ------------------------------------------------------------------------------


def check_split(
    train: Any, val: Any, test: Any, stratify_by: str | None = None,
    group_by: str | None = None, n_bins: Any = 4,
) -> list[str]:
    """The problems of ``data.split`` settings (fractions >= 0 summing to 1, one of stratify_by
    and group_by, ``n_bins`` >= 1), each naming the key and the fix."""
    p = Problems()
    values = {"train": train, "val": val, "test": test}
    numbers = True
    for key, value in values.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        numbers &= p.check(
            ok and math.isfinite(value) and value >= 0,
            f"data.split.{key} must be a number >= 0, got {value!r}; "
            "use fractions such as train=0.8 val=0.1 test=0.1",
        )
    if numbers:
        total = train + val + test
        p.check(
            abs(total - 1.0) <= _TOLERANCE,
            f"data.split.train/val/test must sum to 1, got {train}+{val}+{test}={total:g}; "
            "adjust the fractions (e.g. 0.8/0.1/0.1)",
        )
    p.check(
        stratify_by is None or group_by is None,
        "data.split.stratify_by and data.split.group_by cannot both be set; "
        "choose one (group_by prevents leakage, stratify_by balances a field)",
    )
    p.check(
        not isinstance(n_bins, bool) and isinstance(n_bins, int) and n_bins >= 1,
        f"data.split.n_bins must be an integer >= 1, got {n_bins!r}",
    )
    return p


def _allocate(n: int, fractions: Sequence[float], priority: Sequence[float] | None) -> list[int]:
    """Floor of each share plus the leftover units, one each, to splits with a fractional part.

    Without ``priority`` leftovers go to the largest fractional parts (ties: earlier split);
    with it (a running target minus what is already assigned) they go to the splits left
    furthest below that target after the floors, among those with a non-zero fractional part.
    """
    total = sum(fractions)
    exact = [n * f / total for f in fractions]
    counts = [math.floor(x + 1e-9) for x in exact]
    rest = [max(0.0, x - c) for x, c in zip(exact, counts, strict=True)]
    leftover = n - sum(counts)
    while leftover < 0:  # only float noise can overshoot; take it back from the largest share
        counts[counts.index(max(counts))] -= 1
        leftover += 1
    eligible = [i for i in range(len(fractions)) if rest[i] > 1e-9]
    if priority is None:
        eligible.sort(key=lambda i: (-rest[i], i))
    else:
        eligible.sort(key=lambda i: (-(priority[i] - counts[i]), -rest[i], i))
    for i in eligible[:leftover]:
        counts[i] += 1
    return counts


def _cut(items: list[Example], counts: Sequence[int]) -> list[list[Example]]:
    out: list[list[Example]] = []
    start = 0
    for c in counts:
        out.append(items[start : start + c])
        start += c
    return out


def _named(fractions: Sequence[float]) -> dict[str, float]:
    return dict(zip(SPLIT_NAMES, fractions, strict=True))


def _order_key(ex: Example) -> tuple[str, str, str]:
    """Sort by id; prompt/response only break ties between (invalid) duplicate ids."""
    return (ex.id, repr(ex.prompt), ex.response)


def _field_value(ex: Example, name: str) -> Any:
    """The value of ``name`` for one example: ``Example.group`` for "group", else a field."""
    if name == "group" and ex.group is not None:
        return ex.group
    if name in ex.fields and ex.fields[name] is not None:
        return ex.fields[name]
    available = sorted(ex.fields)
    if ex.group is not None:
        available = ["group", *available]
    raise DataError(
        f"split field {name!r} is missing from example {ex.id!r} "
        f"(available fields: {', '.join(available) or 'none'}); "
        "add it to every example or set data.split.stratify_by/group_by to an available field"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _strata_keys(raw: list[Any], name: str, n_bins: int) -> list[str]:
    if raw and all(_is_number(v) for v in raw):
        for v in raw:
            if not math.isfinite(v):
                raise DataError(
                    f"split field {name!r} has a non-finite value ({v!r}); "
                    "drop or fill those examples before stratifying"
                )
        return [f"q{b}" for b in quantile_bins(raw, n_bins)]
    return [_hashable_key(v) for v in raw]


def _hashable_key(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Hashable) and not isinstance(value, tuple):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def _stratum_sort_key(key: str) -> tuple[int, str]:
    if key.startswith("q") and key[1:].isdigit():
        return (int(key[1:]), key)
    return (0, key)
