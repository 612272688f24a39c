"""Token-budget batching and padding of translation pairs (vaswani_hf.data.batching)."""

import numpy as np
import pytest
from conftest import pair_lengths

from vaswani_hf.data.batching import collate, padding_shares, token_batches


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


def test_padding_shares_count_what_each_batch_pads():
    # Batch [0, 1]: sources 2 and 4 padded to 4 (2 of 8 padding), targets 3 and 3 (none); batch [2]: nothing padded.
    shares = padding_shares([[0, 1], [2]], src_lengths=[2, 4, 5], tgt_lengths=[3, 3, 1])
    assert shares["batches"] == 2 and shares["pairs_per_batch"] == 1.5
    assert shares["source_padding_share"] == pytest.approx(2 / 13)
    assert shares["target_padding_share"] == 0
    assert shares["padding_share"] == pytest.approx(2 / 20)


def test_length_bucketed_batches_pad_less_than_batches_in_file_order():
    src, tgt = pair_lengths(n=2000)
    bucketed = padding_shares(token_batches(src, tgt, 1024, rng=np.random.default_rng(0)), src, tgt)
    in_order = padding_shares([list(range(i, min(i + 32, 2000))) for i in range(0, 2000, 32)], src, tgt)
    assert bucketed["padding_share"] < 0.1 < in_order["padding_share"]
