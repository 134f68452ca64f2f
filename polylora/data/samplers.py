"""Batch samplers that keep one group (reporter, series, persona) from dominating a batch.

With random batches a model sees several examples of one group together and can fit
group-specific quirks; drawing each batch from distinct groups pushes it toward what
generalizes across groups.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator, Sequence

from torch.utils.data import Sampler

from polylora.data.example import Example
from polylora.errors import ConfigError


class GroupBalancedBatchSampler(Sampler[list[int]]):
    """Yields batches of dataset indices, taking one example from each group in turn.

    Each epoch the group order and the order inside each group are reshuffled with
    ``seed + epoch``; the sampler walks the groups round-robin, one example per group per
    round, dropping groups as they run out, and cuts that stream into batches. So a batch
    never holds two examples of one group while at least ``batch_size`` groups still have
    examples, and every index appears exactly once per epoch (minus a short last batch with
    ``drop_last``). Call ``set_epoch`` before each epoch, as with ``DistributedSampler``.
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        batch_size: int,
        seed: int,
        drop_last: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(
                f"batch size must be an integer >= 1, got {batch_size!r}; "
                "set the training batch size to a positive integer"
            )
        super().__init__()
        self.groups: list[Hashable] = list(groups)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        members: dict[Hashable, list[int]] = {}
        for index, group in enumerate(self.groups):
            members.setdefault(group, []).append(index)
        self._members = members
        # A stable, order-of-first-appearance-free key order so the shuffle is reproducible.
        self._keys = sorted(members, key=lambda g: (type(g).__name__, str(g)))

    @classmethod
    def from_examples(
        cls,
        examples: Sequence[Example],
        batch_size: int,
        seed: int,
        drop_last: bool = False,
    ) -> GroupBalancedBatchSampler:
        """Sampler over ``examples`` grouped by ``Example.group`` (ungrouped ones stand alone)."""
        groups: list[Hashable] = [
            ex.group if ex.group is not None else ("__ungrouped__", ex.id) for ex in examples
        ]
        return cls(groups, batch_size=batch_size, seed=seed, drop_last=drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields (deterministic in seed + epoch)."""
        self.epoch = epoch

    def order(self) -> list[int]:
        """This epoch's index stream before it is cut into batches."""
        rng = random.Random(self.seed + self.epoch)
        keys = list(self._keys)
        rng.shuffle(keys)
        queues: list[list[int]] = []
        for key in keys:
            queue = list(self._members[key])
            rng.shuffle(queue)
            queue.reverse()  # pop() from the end takes them in shuffled order
            queues.append(queue)
        stream: list[int] = []
        while queues:
            for queue in queues:
                stream.append(queue.pop())
            queues = [q for q in queues if q]
        return stream

    def __iter__(self) -> Iterator[list[int]]:
        stream = self.order()
        for start in range(0, len(stream), self.batch_size):
            batch = stream[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.groups)
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size
