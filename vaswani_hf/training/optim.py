"""§5.3: the paper's Adam and the Eq. 3 learning-rate schedule."""

from __future__ import annotations

import torch


def noam_lambda(d_model: int, warmup_steps: int):
    """Eq. 3 as a function of the update number (1-based): d_model^-0.5 * min(n^-0.5, n * warmup^-1.5).

    The first update uses n = 1, never lr 0: ``LambdaLR`` calls its function with 0 before the first
    step, so the function shifts by one. transformers' ``inverse_sqrt`` schedule starts at 0 instead.
    """
    if d_model <= 0 or warmup_steps <= 0:
        raise ValueError(f"noam_lambda needs d_model > 0 and warmup_steps > 0, got {d_model} and {warmup_steps}.")

    def lr_at(step: int) -> float:
        n = step + 1
        return d_model**-0.5 * min(n**-0.5, n * warmup_steps**-1.5)

    return lr_at


def noam_schedule(
    optimizer: torch.optim.Optimizer, d_model: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Eq. 3 on ``optimizer``; its ``lr`` multiplies the schedule (1.0 is the paper)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, noam_lambda(d_model, warmup_steps))


def paper_adam(params, lr_scale: float = 1.0, weight_decay: float = 0.0) -> torch.optim.Adam:
    """§5.3: Adam with beta1 0.9, beta2 0.98, eps 1e-9; ``lr_scale`` multiplies Eq. 3.

    PyTorch's fused kernel (one pass over each parameter instead of a chain of element-wise ops, each reading and
    writing all of them) where every parameter is a floating-point tensor on a CPU or CUDA device; it computes the
    same update up to float rounding. `python scripts/benchmark.py --modes train --profile` shows its share of a step.
    """
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in tensors) or None
    return torch.optim.Adam(params, lr=lr_scale, betas=(0.9, 0.98), eps=1e-9, weight_decay=weight_decay, fused=fused)


def constant_lambda(warmup_steps: int):
    """A fixed learning rate after a linear warm-up: update n (1-based) trains at min(1, n / warmup) of it."""
    if warmup_steps <= 0:
        raise ValueError(f"constant_lambda needs warmup_steps > 0, got {warmup_steps}.")

    def lr_at(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps)

    return lr_at


def optimizer_and_schedule(params, train, d_model: int) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """The run config's optimiser and schedule (`train` is a `TrainArgs`): the paper's Adam with Eq. 3 scaled by
    `train.lr_scale` (`schedule: noam`), or the same Adam at `train.learning_rate` after a linear warm-up
    (`schedule: constant`)."""
    if train.schedule == "noam":
        optimizer = paper_adam(params, train.lr_scale, train.weight_decay)
        return optimizer, noam_schedule(optimizer, d_model, train.warmup_steps)
    if train.schedule == "constant":
        optimizer = paper_adam(params, train.learning_rate, train.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, constant_lambda(train.warmup_steps))
    raise ValueError(f"unknown train.schedule {train.schedule!r}: use 'noam' or 'constant'")
