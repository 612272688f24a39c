"""Validation during training: loss and perplexity on the whole split, BLEU/chrF on its first sentences, on one process or many (DDP, FSDP2)."""

from __future__ import annotations

import math
import weakref

import numpy as np
import torch

from ..data.batching import collate, token_batches
from .loss import label_smoothed_loss, teacher_forced_logits


def is_sharded(model) -> bool:
    """Whether `model` is sharded by FSDP2 (`fully_shard`, what `scripts/accelerate/fsdp.yaml` sets up): each of its
    forwards then all-gathers parameters from every process."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


_GENERATE_GATHERS_ROOT: weakref.WeakSet = weakref.WeakSet()


def _gather_root_in_generate(model) -> None:
    """Makes FSDP2 gather the root's parameters (the shared embedding) around `generate()` as around `forward()`:
    `generate()` runs the encoder directly, not through the root's forward, whose hooks are what gathers them."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    if model not in _GENERATE_GATHERS_ROOT:
        register_fsdp_forward_method(model, "generate")
        _GENERATE_GATHERS_ROOT.add(model)


@torch.no_grad()
def validation_loss(
    model, dataset, *, max_tokens: int, pad_token_id: int, accelerator, label_smoothing: float
) -> dict[str, float]:
    """Per-token label-smoothed loss (the training objective), plain cross-entropy and the perplexity from it on a
    tokenized split, shared by processes."""
    model.eval()
    batches = token_batches(
        [len(x) for x in dataset["input_ids"]],
        [len(x) for x in dataset["labels"]],
        max_tokens,
        rng=np.random.default_rng(0),
    )
    totals = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # smoothed loss, nll, tokens
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    # A sharded model's every forward is a collective: all processes must make as many, so one with fewer batches
    # than the others runs a batch more whose result it does not count.
    forwards = math.ceil(len(batches) / accelerator.num_processes) if is_sharded(model) else len(mine)
    for i in range(forwards):
        indices = mine[i] if i < len(mine) else batches[0]
        batch = {k: v.to(accelerator.device) for k, v in collate(dataset[indices], pad_token_id).items()}
        with accelerator.autocast():
            logits = teacher_forced_logits(model, batch)
        if i >= len(mine):
            continue
        labels = batch["labels"]
        smoothed = label_smoothed_loss(logits, labels, label_smoothing, num_items_in_batch=1)
        nll = label_smoothed_loss(logits, labels, 0.0, num_items_in_batch=1)
        totals += torch.stack([smoothed.double(), nll.double(), (labels != -100).sum().double()])
    totals = accelerator.reduce(totals, "sum")
    loss_sum, nll_sum, tokens = totals.tolist()
    nll = nll_sum / tokens
    return {"valid/loss": loss_sum / tokens, "valid/nll": nll, "valid/ppl": math.exp(nll), "valid/tokens": tokens}


def validate(model, tokenizer, valid_set, valid_pairs, cfg, accelerator) -> dict[str, float]:
    """Validation loss and perplexity on the whole split, BLEU/chrF with beam search on its first sentences."""
    from ..evaluation import score, translate

    metrics = validation_loss(
        model,
        valid_set,
        max_tokens=cfg.eval.max_tokens,
        pad_token_id=tokenizer.pad_token_id,
        accelerator=accelerator,
        label_smoothing=cfg.train.label_smoothing,
    )
    n = min(cfg.data.bleu_sentences, len(valid_pairs))
    # Unsharded (one process, DDP), the main process decodes alone while the others wait. Sharded (FSDP2), every
    # forward is a collective: every process decodes the same sentences, `synced_gpus` keeping them stepping together
    # until all are done.
    sharded = is_sharded(model)
    if n and (sharded or accelerator.is_main_process):
        pairs = valid_pairs[:n]["translation"]
        if sharded:
            _gather_root_in_generate(model)
        with accelerator.autocast():
            hypotheses = translate(
                model,
                tokenizer,
                [p[cfg.data.src_lang] for p in pairs],
                max_tokens=cfg.eval.max_tokens,
                num_beams=cfg.eval.num_beams,
                **({"synced_gpus": True} if sharded else {}),
            )
        scores = score(hypotheses, [p[cfg.data.tgt_lang] for p in pairs])
        metrics.update({"valid/bleu": scores["bleu"], "valid/chrf": scores["chrf"]})
    accelerator.wait_for_everyone()
    model.train()
    return metrics
