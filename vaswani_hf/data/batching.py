"""Batches by token budget and their padding, for training (pairs, §5.1) and for translation (sources)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def token_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], max_tokens: int, *, rng: np.random.Generator
) -> list[list[int]]:
    """Length-bucketed batches whose padded size, batch size x the longest side, stays within `max_tokens`.

    Pairs are sorted by target then source length (ties broken at random), so a batch holds pairs of nearly the same
    lengths and padding is small; the batches come back in a random order. The padded size counts the longer of the
    two sides, as fairseq does, because both the encoder and the decoder run on the batch.
    """
    src = np.asarray(src_lengths)
    tgt = np.asarray(tgt_lengths)
    longest = np.maximum(src, tgt)
    if len(longest) and longest.max() > max_tokens:
        raise ValueError(
            f"A pair has {longest.max()} tokens but train.max_tokens is {max_tokens}: raise train.max_tokens or lower "
            "data.max_length."
        )
    order = rng.permutation(len(src))
    order = order[np.lexsort((src[order], tgt[order]))]
    batches, current, width = [], [], 0
    for index in order.tolist():
        new_width = max(width, int(longest[index]))
        if current and new_width * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, new_width = [], int(longest[index])
        current.append(index)
        width = new_width
    if current:
        batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


def length_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Groups indices of `lengths` into batches whose padded size, batch size x longest length, is at most
    `max_tokens`. Sentences are taken longest first, so that each batch holds sentences of similar length and a batch
    too large for memory fails at the start; a sentence longer than `max_tokens` forms a batch alone.
    """
    batches: list[list[int]] = []
    longest = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True):
        if batches and (len(batches[-1]) + 1) * longest <= max_tokens:
            batches[-1].append(index)
        else:
            batches.append([index])
            longest = lengths[index]
    return batches


def padding_shares(batches: Sequence[Sequence[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int]) -> dict:
    """What padding costs a batching: each batch padded to its longest source and its longest target, as
    `collate` and transformers' `DataCollatorForSeq2Seq` pad. Returns the number of batches, the mean number of pairs
    in one, and the share of padded positions on each side and on both together."""
    src, tgt = np.asarray(src_lengths), np.asarray(tgt_lengths)
    real = {"source": 0, "target": 0}
    padded = {"source": 0, "target": 0}
    for batch in batches:
        index = np.asarray(batch)
        for side, lengths in (("source", src), ("target", tgt)):
            real[side] += int(lengths[index].sum())
            padded[side] += int(lengths[index].max()) * len(index)
    return {
        "batches": len(batches),
        "pairs_per_batch": sum(len(batch) for batch in batches) / max(len(batches), 1),
        "source_padding_share": 1 - real["source"] / padded["source"],
        "target_padding_share": 1 - real["target"] / padded["target"],
        "padding_share": 1 - (real["source"] + real["target"]) / (padded["source"] + padded["target"]),
    }


def collate(examples: dict[str, list[list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors from a dict of lists (`dataset[indices]`); label padding is -100 (no loss)."""
    sources, targets = examples["input_ids"], examples["labels"]
    input_ids = torch.full((len(sources), max(map(len, sources))), pad_token_id, dtype=torch.long)  # (B, S)
    labels = torch.full((len(targets), max(map(len, targets))), -100, dtype=torch.long)  # (B, T)
    for row, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
        input_ids[row, : len(src)] = torch.tensor(src)
        labels[row, : len(tgt)] = torch.tensor(tgt)
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad_token_id).long(), "labels": labels}


def pad_ids(sequences: list[list[int]], pad_token_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids` and `attention_mask` on `device`."""
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        attention_mask[row, : len(sequence)] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
