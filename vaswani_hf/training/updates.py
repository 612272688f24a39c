"""§5.1: an epoch as updates of about `update_tokens` target tokens, shared out among processes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.batching import token_batches


@dataclass(frozen=True)
class Update:
    """The micro-batches of one optimizer update; process `rank` of `n` runs `micro_batches[rank::n]`."""

    micro_batches: tuple[tuple[int, ...], ...]
    target_tokens: int

    def for_process(self, rank: int, num_processes: int) -> tuple[tuple[int, ...], ...]:
        return self.micro_batches[rank::num_processes]


def plan_epoch(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    *,
    max_tokens: int,
    update_tokens: int,
    num_processes: int = 1,
    seed: int = 0,
    epoch: int = 0,
) -> list[Update]:
    """One epoch as a list of updates of about `update_tokens` target tokens each (§5.1: ~25000).

    Every process computes the same plan from (seed, epoch), so the plan doubles as the data position of a
    checkpoint, and each update knows its global number of target tokens before it runs: the loss of every
    micro-batch is divided by it, which makes the update the same whether its micro-batches run one after another on
    one process or side by side on several. An update holds a multiple of `num_processes` micro-batches so that every
    process takes part in every update; up to `num_processes - 1` leftover batches are skipped each epoch.
    """
    rng = np.random.default_rng([seed, epoch])
    batches = token_batches(src_lengths, tgt_lengths, max_tokens, rng=rng)
    tgt = np.asarray(tgt_lengths)
    updates, current, tokens = [], [], 0
    for batch in batches:
        current.append(tuple(batch))
        tokens += int(tgt[batch].sum())
        if tokens >= update_tokens and len(current) % num_processes == 0:
            updates.append(Update(tuple(current), tokens))
            current, tokens = [], 0
    usable = len(current) - len(current) % num_processes
    if usable:
        current = current[:usable]
        updates.append(Update(tuple(current), int(sum(tgt[list(b)].sum() for b in current))))
    return updates
