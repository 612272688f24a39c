"""The update plan of an epoch (vaswani_hf.training.updates): micro-batches grouped into updates of a token budget,
shared among processes."""

import numpy as np
import pytest
from conftest import pair_lengths

from vaswani_hf.data.batching import token_batches
from vaswani_hf.training.updates import plan_epoch


@pytest.mark.parametrize("num_processes", [1, 2, 3])
def test_plan_epoch_updates(num_processes):
    src, tgt = pair_lengths()
    plan = plan_epoch(src, tgt, max_tokens=600, update_tokens=2000, num_processes=num_processes, seed=3, epoch=1)
    for update in plan:
        assert len(update.micro_batches) % num_processes == 0
        assert update.target_tokens == sum(tgt[i] for b in update.micro_batches for i in b)
        shares = [update.for_process(r, num_processes) for r in range(num_processes)]
        assert sorted(b for s in shares for b in s) == sorted(update.micro_batches)
    assert all(u.target_tokens >= 2000 for u in plan[:-1])
    used = [i for u in plan for b in u.micro_batches for i in b]
    assert len(used) == len(set(used))
    # At most num_processes - 1 batches are left out of an epoch.
    all_batches = token_batches(src, tgt, 600, rng=np.random.default_rng([3, 1]))
    assert len(all_batches) - sum(len(u.micro_batches) for u in plan) < num_processes


def test_plan_epoch_is_a_function_of_seed_and_epoch():
    src, tgt = pair_lengths()
    kwargs = dict(max_tokens=600, update_tokens=2000)
    assert plan_epoch(src, tgt, seed=1, epoch=0, **kwargs) == plan_epoch(src, tgt, seed=1, epoch=0, **kwargs)
    assert plan_epoch(src, tgt, seed=1, epoch=0, **kwargs) != plan_epoch(src, tgt, seed=1, epoch=1, **kwargs)
