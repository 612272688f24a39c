"""The parity check: greedy translations of the converted model against our model's, token for token, and where
they part, how close our model was to a tie there."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...data.batching import length_batches, pad_ids
from ...evaluation import check_sentences, encode_sentences
from ...modeling_vaswani import VaswaniForConditionalGeneration
from .converter import ExportError
from .translator import CTranslate2Translator


def generate_reference_ids(
    model: VaswaniForConditionalGeneration,
    input_ids: Sequence[Sequence[int]],
    *,
    max_tokens: int = 4096,
    **generate_kwargs,
) -> list[list[int]]:
    """`model.generate(**generate_kwargs)` over unpadded sources in length-sorted batches of at most `max_tokens`
    padded source tokens, returned as `CTranslate2Translator.generate_ids` returns its output: without <s>, cut
    before the first </s>, without padding."""
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    outputs: list[list[int]] = [[] for _ in input_ids]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in length_batches([len(ids) for ids in input_ids], max_tokens):
                inputs = pad_ids([list(input_ids[index]) for index in batch], pad, model.device)
                for index, row in zip(batch, model.generate(**inputs, **generate_kwargs).tolist(), strict=True):
                    row = row[1:]  # the decoder start token
                    # Only rows that ended are padded, after their </s>.
                    outputs[index] = row[: row.index(eos)] if eos in row else row
    finally:
        model.train(was_training)
    return outputs


def compare_greedy(
    model: VaswaniForConditionalGeneration,
    translator: CTranslate2Translator,
    sentences: Sequence[str],
    *,
    max_new_tokens: int | None = None,
    max_tokens: int = 4096,
) -> dict:
    """Greedy translations of `sentences` by `model.generate(num_beams=1)` and by the converted model, compared token
    for token, with the same output limit (`max_new_tokens`, else the per-sentence source length + 50).

    Returns a dict with `sentences`, `identical` (count), and `differences`: for each sentence that differs, its
    index, source, both translations, the first position where they part and, at that position after the common
    prefix, our model's log-probabilities of both tokens (`margin` = ours - CTranslate2's; a margin near 0 is a near
    tie that float rounding can flip).
    """
    tokenizer = translator.tokenizer
    if tokenizer is None:
        raise ExportError("compare_greedy translates text: give the CTranslate2Translator its tokenizer=...")
    texts = check_sentences("sentences", sentences)
    input_ids = encode_sentences(texts, tokenizer, model.config.max_position_embeddings)
    limit = dict(max_new_tokens=max_new_tokens) if max_new_tokens is not None else {}
    ours = generate_reference_ids(model, input_ids, max_tokens=max_tokens, num_beams=1, do_sample=False, **limit)
    theirs = translator.generate_ids(input_ids, num_beams=1, **limit)
    differences = []
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a == b:
            continue
        # Where they part: the first differing token, or </s> on the side that ended first.
        position = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        token_a = a[position] if position < len(a) else model.config.eos_token_id
        token_b = b[position] if position < len(b) else model.config.eos_token_id
        decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, *a[:position]]], device=model.device)
        with torch.inference_mode():
            logits = model(
                input_ids=torch.tensor([input_ids[index]], device=model.device), decoder_input_ids=decoder_input_ids
            ).logits
        log_probs = logits[0, -1].float().log_softmax(-1)
        differences.append(
            {
                "index": index,
                "source": texts[index],
                "ours": tokenizer.decode(a, skip_special_tokens=True),
                "ctranslate2": tokenizer.decode(b, skip_special_tokens=True),
                "position": position,
                "ours_token": translator.tokens[token_a],
                "ctranslate2_token": translator.tokens[token_b],
                "ours_log_prob": log_probs[token_a].item(),
                "ctranslate2_log_prob": log_probs[token_b].item(),
                "margin": (log_probs[token_a] - log_probs[token_b]).item(),
            }
        )
    return {"sentences": len(texts), "identical": len(texts) - len(differences), "differences": differences}
