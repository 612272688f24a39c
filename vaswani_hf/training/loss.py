"""§5.4: the training objective, label-smoothed cross-entropy on teacher-forced logits."""

from __future__ import annotations

import torch


def label_smoothed_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, num_items_in_batch=None
) -> torch.Tensor:
    """§5.4: cross-entropy with label smoothing epsilon_ls, which spreads epsilon uniformly over the vocabulary
    (Szegedy et al., 2016, whom the paper cites; PyTorch's and transformers' `LabelSmoother` form). Summed over the
    target tokens (labels != -100) and divided by `num_items_in_batch`, the target tokens of the whole update, so that
    accumulated and data-parallel gradients equal those of one large batch; by default this batch's own count.

    `logits` (B, T, V) and `labels` (B, T); `label_smoothing=0` is the model's own loss, plain cross-entropy.
    """
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(),  # (B * T, V)
        labels.flatten().to(logits.device),
        ignore_index=-100,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return loss / (num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum())


def teacher_forced_logits(model, batch: dict) -> torch.Tensor:
    """The logits (B, T, V) for a micro-batch from `collate`, with decoder inputs built from the labels
    (`prepare_decoder_input_ids_from_labels`, as `DataCollatorForSeq2Seq` builds them) and no decoding cache. The
    labels stay out of the call: the model would compute its own loss with them, for nothing."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    prepare = getattr(model, "module", model).prepare_decoder_input_ids_from_labels  # DDP wraps the model
    return model(**inputs, decoder_input_ids=prepare(labels=batch["labels"]), use_cache=False).logits


def training_loss(model, batch: dict, label_smoothing: float, num_items_in_batch=None) -> torch.Tensor:
    """The recipe's loss for one micro-batch from `collate`: `label_smoothed_loss` of `teacher_forced_logits`."""
    return label_smoothed_loss(
        teacher_forced_logits(model, batch), batch["labels"], label_smoothing, num_items_in_batch
    )
