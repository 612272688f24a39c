"""Whole translation models measured as sentences grow, the case against recurrence (§1, §4 and Table 1 of the paper)
in numbers: any `AutoModelForSeq2SeqLM`, the Transformer and the recurrent encoder-decoder alike. (`layer_comparison`
measures single layers.)

- `step_seconds`: the time of one training forward and backward as the sentences grow, beside `sequential_operations`,
  the operations of a layer that must run one after another (§4: O(1) for self-attention, O(n) for a recurrent layer).
- `gradient_by_distance`: how strongly the loss at a target position reaches the source embedding at each distance
  from it, the norm of d loss_t / d x_j. A recurrent encoder passes that gradient through every step between (where
  it may vanish); attention reaches every source position in one step.
- `bleu_by_length`: corpus BLEU and chrF of the test sentences grouped by source length, where an encoder that must
  squeeze a sentence into one final state should lose most on the long ones.

Shape legend: B batch, S source tokens, T target tokens, E embedding width, V vocabulary.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from ..evaluation import check_sentences, score
from .layer_comparison import sequential_steps

RECURRENT_MODEL_TYPES = ("rnn_seq2seq",)
# Source-length buckets of `bleu_by_length`, in tokens: 1-10, 11-20, 21-30, 31-45, 46 and more.
LENGTH_EDGES = (10, 20, 30, 45)


def sequential_operations(model, length: int) -> int:
    """Operations one layer of `model` must run one after another over `length` positions (Table 1): `length` for a
    recurrent layer, 1 for self-attention."""
    recurrent = model.config.model_type in RECURRENT_MODEL_TYPES
    return sequential_steps("recurrent" if recurrent else "self_attention", length)


def _random_batch(config, batch_size: int, length: int, generator: torch.Generator, device) -> dict:
    """Source and target of `length` tokens (the last one </s>), drawn from the ordinary tokens."""
    low = max(config.pad_token_id, config.eos_token_id, config.decoder_start_token_id) + 1
    ids = torch.randint(low, config.vocab_size, (2, batch_size, length), generator=generator)  # (2, B, n)
    ids[:, :, -1] = config.eos_token_id
    return {"input_ids": ids[0].to(device), "labels": ids[1].to(device)}


def step_seconds(
    model, lengths: Sequence[int], *, batch_size: int = 16, repeats: int = 3, seed: int = 0
) -> list[dict]:
    """The seconds of one training forward and backward (`labels` given, dropout on) of `batch_size` random sentence
    pairs, source and target `length` tokens long, for each length: the median of `repeats` after one warm-up. The
    gradients are thrown away; the weights do not change."""
    if batch_size < 1 or repeats < 1:
        raise ValueError(f"batch_size and repeats must be positive, got {batch_size} and {repeats}")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.train()
    results = []
    try:
        for length in lengths:
            batch = _random_batch(model.config, batch_size, length, generator, model.device)
            times = []
            for run in range(repeats + 1):
                started = time.perf_counter()
                model(**batch).loss.backward()
                if run:  # the first run warms up allocators and kernels
                    times.append(time.perf_counter() - started)
                model.zero_grad(set_to_none=True)
            results.append(
                {
                    "length": length,
                    "seconds": statistics.median(times),
                    "target_tokens_per_s": batch_size * length / statistics.median(times),
                    "sequential_operations": sequential_operations(model, length),
                }
            )
    finally:
        model.train(was_training)
    return results


def gradient_by_distance(
    model, tokenizer, sources: Sequence[str], targets: Sequence[str], *, max_distance: int = 40
) -> dict[str, list]:
    """The mean norm of d loss_t / d x_j, the gradient of the cross-entropy at target position t with respect to the
    embedding x_j of source token j, at each distance d = |t - j| up to `max_distance`, over every target position of
    every pair (the model in eval mode, so without dropout).

    Source and target positions are compared by index, which pairs them roughly where the two languages keep the same
    word order; the distance is that of the positions, not of aligned words. Returns `distance`, `mean_norm` and
    `count` (how many (t, j) pairs each mean is over), lists of one entry per distance that occurs.
    """
    sources, targets = check_sentences("sources", sources), check_sentences("targets", targets)
    if len(sources) != len(targets):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets; they must be parallel")
    totals = torch.zeros(max_distance + 1, dtype=torch.float64)
    counts = torch.zeros(max_distance + 1, dtype=torch.long)
    was_training = model.training
    model.eval()
    embeddings = model.get_input_embeddings()
    try:
        for source, target in zip(sources, targets, strict=True):
            input_ids = tokenizer([source], return_tensors="pt").input_ids.to(model.device)  # (1, S)
            labels = tokenizer(text_target=[target], return_tensors="pt").input_ids.to(model.device)  # (1, T)
            # The lookup's output as a leaf: its gradient is d loss / d x_j, whatever the model scales it by after.
            inputs_embeds = embeddings(input_ids).detach().requires_grad_()  # (1, S, E)
            logits = model(inputs_embeds=inputs_embeds, labels=labels, use_cache=False).logits  # (1, T, V)
            losses = F.cross_entropy(logits[0].float(), labels[0], reduction="none")  # (T,)
            source_positions = torch.arange(input_ids.shape[1])  # (S,)
            for t in range(labels.shape[1]):
                (gradient,) = torch.autograd.grad(losses[t], inputs_embeds, retain_graph=t < labels.shape[1] - 1)
                norms = gradient[0].float().norm(dim=-1).cpu().double()  # (S, E) -> (S,)
                distance = (source_positions - t).abs()  # (S,)
                kept = distance <= max_distance
                totals.index_add_(0, distance[kept], norms[kept])
                counts.index_add_(0, distance[kept], torch.ones_like(distance[kept]))
    finally:
        model.train(was_training)
    seen = counts.nonzero().flatten().tolist()
    return {
        "distance": seen,
        "mean_norm": [(totals[d] / counts[d]).item() for d in seen],
        "count": [counts[d].item() for d in seen],
    }


def bleu_by_length(
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    tokenizer,
    edges: Sequence[int] = LENGTH_EDGES,
    *,
    min_sentences: int = 1,
) -> list[dict]:
    """Corpus BLEU and chrF of the sentences in each source-length bucket (tokens of `tokenizer`, </s> not counted):
    1 to edges[0], edges[0] + 1 to edges[1], ..., and over edges[-1]. Empty buckets are left out.

    A bucket of fewer than `min_sentences` sentences is merged into its neighbour, since corpus BLEU of a handful of
    sentences says little: the longest such bucket first, into the next shorter one (a small top bucket turns
    "31-45" and "46+" into "31+"), and the shortest bucket, which has no shorter neighbour, into the next longer one;
    until every bucket holds `min_sentences` or only one is left.
    """
    sources = check_sentences("sources", sources)
    if not len(sources) == len(hypotheses) == len(references):
        raise ValueError(
            f"got {len(sources)} sources, {len(hypotheses)} hypotheses and {len(references)} references; they must be "
            "parallel"
        )
    if list(edges) != sorted(set(edges)) or not edges or edges[0] < 1:
        raise ValueError(f"edges must be increasing positive lengths, got {list(edges)}")
    if min_sentences < 1:
        raise ValueError(f"min_sentences must be at least 1, got {min_sentences}")
    lengths = [len(ids) - 1 for ids in tokenizer(sources, verbose=False)["input_ids"]]
    bounds = [
        (1, edges[0]),
        *((low + 1, high) for low, high in zip(edges[:-1], edges[1:], strict=True)),
        (edges[-1] + 1, None),
    ]
    # (low, high or None, member indices) of the non-empty buckets, shortest first.
    groups = []
    for low, high in bounds:
        members = [i for i, n in enumerate(lengths) if n >= low and (high is None or n <= high)]
        if members:
            groups.append((low, high, members))
    while len(groups) > 1:
        small = [g for g, (_, _, members) in enumerate(groups) if len(members) < min_sentences]
        if not small:
            break
        # Downwards from the longest small bucket; the shortest, with nothing below it, upwards. Neighbours are
        # adjacent ranges (an empty bucket between them is covered by the merged range, and holds no sentence).
        upper = small[-1] if small[-1] > 0 else 1
        (low, _, below), (_, high, above) = groups[upper - 1], groups[upper]
        groups[upper - 1 : upper + 1] = [(low, high, below + above)]
    buckets = []
    for low, high, members in groups:
        scores = score([hypotheses[i] for i in members], [references[i] for i in members])
        buckets.append(
            {
                "bucket": f"{low}-{high}" if high is not None else f"{low}+",
                "sentences": len(members),
                "mean_source_tokens": sum(lengths[i] for i in members) / len(members),
                "bleu": scores["bleu"],
                "chrf": scores["chrf"],
            }
        )
    return buckets
