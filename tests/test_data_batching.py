"""Token-budget batching and padding of translation pairs (vaswani_hf.data.batching)."""

import numpy as np
import pytest
from conftest import pair_lengths

from vaswani_hf.data.batching import collate, token_batches


def test_token_batches_cover_every_pair_once_within_budget():
    src, tgt = pair_lengths()
    batches = token_batches(src, tgt, 600, rng=np.random.default_rng(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(src)))
    for b in batches:
        assert len(b) * max(max(src[i], tgt[i]) for i in b) <= 600
    # Length bucketing: padding is a small share of the padded tokens.
    padded = sum(len(b) * max(tgt[i] for i in b) for b in batches)
    assert sum(tgt) / padded > 0.9


def test_token_batches_reject_a_pair_over_the_budget():
    with pytest.raises(ValueError, match="max_tokens"):
        token_batches([10, 700], [10, 10], 600, rng=np.random.default_rng(0))


def test_collate_pads_sources_with_pad_and_labels_with_minus_100():
    batch = collate({"input_ids": [[5, 6, 2], [7, 2]], "labels": [[8, 2], [9, 9, 9, 2]]}, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 2], [7, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[8, 2, -100, -100], [9, 9, 9, 2]]
