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


def _sorted_by_source_tokens(tokenizer, word_counts, seed):
    """Sources and references of `word_pairs`, and their source lengths in tokens, shortest first."""
    rows = [row["translation"] for row in word_pairs(word_counts, seed=seed)]
    lengths = [len(tokenizer(r["en"]).input_ids) - 1 for r in rows]
    rows = [row for _, row in sorted(zip(lengths, rows, strict=True), key=lambda pair: pair[0])]
    return [r["en"] for r in rows], [r["de"] for r in rows], sorted(lengths)


def test_bleu_by_length_merges_small_buckets_downwards_then_upwards(word_pairs_tokenizer):
    sources, references, n = _sorted_by_source_tokens(word_pairs_tokenizer, [4, 5, 9, 10, 16, 18], seed=3)
    # The buckets below need these lengths apart (n[2] and n[3] may tie).
    assert n[0] < n[1] < n[2] <= n[3] < n[4] < n[5]

    def buckets(edges, min_sentences=1):
        found = bleu_by_length(
            sources, references, references, word_pairs_tokenizer, edges=edges, min_sentences=min_sentences
        )
        return [(b["bucket"], b["sentences"]) for b in found]

    # Sentences 2 + 3 + 1: the top bucket joins the one below it, which then reaches past its upper edge.
    down = (n[1], n[4])
    assert buckets(down) == [(f"1-{n[1]}", 2), (f"{n[1] + 1}-{n[4]}", 3), (f"{n[4] + 1}+", 1)]
    assert buckets(down, min_sentences=2) == [(f"1-{n[1]}", 2), (f"{n[1] + 1}+", 4)]
    # Sentences 1 + 3 + 2: the shortest bucket has nothing below it and joins the one above.
    up = (n[0], n[3])
    assert buckets(up, min_sentences=2) == [(f"1-{n[3]}", 4), (f"{n[3] + 1}+", 2)]
    # Sentences 1 + 1 + 2 + 1 + 1: merged from the top down, then the shortest upwards, until each bucket holds 2.
    many = (n[0], n[1], n[3], n[4])
    assert buckets(many, min_sentences=2) == [(f"1-{n[1]}", 2), (f"{n[1] + 1}-{n[3]}", 2), (f"{n[3] + 1}+", 2)]
    # More than there are sentences: one bucket of them all is left.
    assert buckets(down, min_sentences=7) == [("1+", 6)]
    merged = bleu_by_length(sources, references, references, word_pairs_tokenizer, edges=down, min_sentences=2)
    assert merged[1]["mean_source_tokens"] == sum(n[2:]) / 4
    with pytest.raises(ValueError, match="min_sentences"):
        bleu_by_length(sources, references, references, word_pairs_tokenizer, min_sentences=0)
