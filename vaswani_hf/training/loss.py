"""§5.4: the training objective, label-smoothed cross-entropy on teacher-forced logits."""

from __future__ import annotations

import torch

# Rows of logits per pass of the fused loss: 2**17 values (512 KiB in fp32) per chunk stay in a core's L2 cache between
# the passes over them; a chunk of a few rows has too little work for a GPU's launches, which take whole tensors.
_CHUNK_VALUES = 2**17


class _LabelSmoothedCrossEntropy(torch.autograd.Function):
    """The sum over target tokens of (1 - eps) * -log p(y) + eps * mean_v(-log p(v)), computed as
    logsumexp(z) - (1 - eps) z_y - eps/V sum_v z_v from the logits z, with the gradient
    softmax(z) - (1 - eps) onehot(y) - eps/V.

    What PyTorch's `cross_entropy(label_smoothing=eps, reduction="sum")` computes, without what it materialises on
    the way: a float32 copy of the logits, their log-softmax, a zero-filled gradient for the gathered entry and a
    second one for the smoothing term, each (N, V). Here the logits are read in chunks of rows, in their own dtype,
    once in the forward and once in the backward, and the gradient is written once, in the logits' dtype
    (docs/speed.md, "The training step", measures what that saves).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, epsilon: float) -> torch.Tensor:
        # logits (N, V), labels (N,) with -100 where no target token is
        n, vocab = logits.shape
        valid = labels != -100
        targets = labels.clamp(min=0).unsqueeze(1)  # (N, 1)
        rows = _chunk_rows(logits)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, n, rows):
            chunk = slice(start, start + rows)
            z = logits[chunk].float()  # (r, V)
            lse[chunk] = torch.logsumexp(z, dim=1)
            per_row = lse[chunk] - (1 - epsilon) * z.gather(1, targets[chunk]).squeeze(1)
            if epsilon:
                per_row = per_row - (epsilon / vocab) * z.sum(dim=1)
            total += per_row.masked_fill(~valid[chunk], 0).sum()
        ctx.save_for_backward(logits, targets, valid, lse)
        ctx.epsilon = epsilon
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total: torch.Tensor):
        logits, targets, valid, lse = ctx.saved_tensors
        epsilon, (n, vocab) = ctx.epsilon, logits.shape
        grad = torch.empty_like(logits, memory_format=torch.contiguous_format)
        # (N, 1): the upstream gradient on target tokens, 0 on ignored positions
        scale = (valid.to(torch.float32) * grad_total.float()).unsqueeze(1)
        rows = _chunk_rows(logits)
        for start in range(0, n, rows):
            chunk = slice(start, start + rows)
            # A copy even of float32 logits: the in-place steps below must not write into them.
            g = logits[chunk].to(torch.float32, copy=True).sub_(lse[chunk].unsqueeze(1)).exp_()  # (r, V): softmax(z)
            if epsilon:
                g -= epsilon / vocab
            g.scatter_add_(1, targets[chunk], torch.full_like(targets[chunk], epsilon - 1, dtype=g.dtype))
            grad[chunk] = g.mul_(scale[chunk])
        return grad, None, None


def _chunk_rows(logits: torch.Tensor) -> int:
    if logits.device.type != "cpu":
        return logits.shape[0] or 1
    return max(1, _CHUNK_VALUES // logits.shape[1])


def label_smoothed_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, num_items_in_batch=None
) -> torch.Tensor:
    """§5.4: cross-entropy with label smoothing epsilon_ls, which spreads epsilon uniformly over the vocabulary
    (Szegedy et al., 2016, whom the paper cites; PyTorch's and transformers' `LabelSmoother` form). Summed over the
    target tokens (labels != -100) and divided by `num_items_in_batch`, the target tokens of the whole update, so that
    accumulated and data-parallel gradients equal those of one large batch; by default this batch's own count.

    `logits` (B, T, V) and `labels` (B, T); `label_smoothing=0` is the model's own loss, plain cross-entropy. The sum
    is accumulated in float32 whatever the logits' dtype, as PyTorch's loss computes it; `_LabelSmoothedCrossEntropy`
    says how it is computed (tests check it against `torch.nn.functional.cross_entropy`, value and gradient).
    """
    labels = labels.to(logits.device)
    loss = _LabelSmoothedCrossEntropy.apply(logits.flatten(0, 1), labels.flatten(), float(label_smoothing))
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
