"""Tests of `vaswani_hf.analysis.sequence_measures` on tiny models: step time by length, gradient flow by distance and
BLEU by source length. (`test_studies_recurrence.py` runs them on trained models, inside the study.)"""

import pytest
import torch
from conftest import tiny_rnn_config, word_pairs

from vaswani_hf import RNNForConditionalGeneration, VaswaniForConditionalGeneration
from vaswani_hf.analysis.sequence_measures import bleu_by_length, gradient_by_distance, step_seconds

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("recurrent", [False, True], ids=["transformer", "gru"])
def test_step_seconds_times_each_length_and_leaves_the_model_as_it_was(tiny_config, recurrent):
    model = (
        RNNForConditionalGeneration(tiny_rnn_config()) if recurrent else VaswaniForConditionalGeneration(tiny_config())
    )
    model.eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    timing = step_seconds(model, [4, 8], batch_size=2, repeats=1)

    assert [t["length"] for t in timing] == [4, 8] and all(t["seconds"] > 0 for t in timing)
    # Table 1: a recurrent layer runs n operations one after another, self-attention one.
    assert [t["sequential_operations"] for t in timing] == ([4, 8] if recurrent else [1, 1])
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(tensor, before[name]) for name, tensor in model.state_dict().items())


def test_gradient_by_distance_counts_every_target_source_pair(make_word_pairs_model, word_pairs_tokenizer):
    rows = [row["translation"] for row in word_pairs([3, 5], seed=2)]
    sources, targets = [r["en"] for r in rows], [r["de"] for r in rows]
    flow = gradient_by_distance(make_word_pairs_model(), word_pairs_tokenizer, sources, targets)

    pairs = sum(
        len(word_pairs_tokenizer(s).input_ids) * len(word_pairs_tokenizer(text_target=t).input_ids)
        for s, t in zip(sources, targets, strict=True)
    )
    assert flow["distance"][0] == 0 and flow["distance"] == sorted(flow["distance"])
    assert sum(flow["count"]) == pairs
    assert all(norm > 0 for norm in flow["mean_norm"])
    with pytest.raises(ValueError, match="parallel"):
        gradient_by_distance(make_word_pairs_model(), word_pairs_tokenizer, sources, targets[:1])


def test_bleu_by_length_groups_the_sentences_by_source_tokens(word_pairs_tokenizer):
    # Four words at least: BLEU counts up to 4-grams, so a shorter sentence scores 0 even when it is exact.
    rows = [row["translation"] for row in word_pairs([4, 5, 9, 10], seed=3)]
    sources, references = [r["en"] for r in rows], [r["de"] for r in rows]
    lengths = [len(word_pairs_tokenizer(s).input_ids) - 1 for s in sources]
    edges = (max(lengths[:2]),)
    buckets = bleu_by_length(sources, references, references, word_pairs_tokenizer, edges=edges)

    assert [b["bucket"] for b in buckets] == [f"1-{edges[0]}", f"{edges[0] + 1}+"]
    assert [b["sentences"] for b in buckets] == [2, 2]
    assert buckets[0]["mean_source_tokens"] == sum(lengths[:2]) / 2
    assert all(b["bleu"] == pytest.approx(100) for b in buckets)
    with pytest.raises(ValueError, match="increasing"):
        bleu_by_length(sources, references, references, word_pairs_tokenizer, edges=(5, 3))
