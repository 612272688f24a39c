"""Vanishing and exploding gradients, measured: the gradient norm of every update of a short training run from
initialisation, with or without clipping, by the model's own training recipe.

A recurrent network back-propagates through a product of one Jacobian per time step, so over long sequences its
gradient tends to vanish or, less often but suddenly, to explode (Bengio et al., 1994; Pascanu et al., 2013). Every
recurrent translation recipe therefore clips the gradient's norm: Bahdanau et al. (2015) at 1, Sutskever et al. (2014)
at 5. The Transformer's paper trains without clipping (§5.3 names none): each position reaches every other through a
fixed number of layers, with residual connections and layer normalisation between. `gradient_norm_run` records the
norm before clipping, whether the run clips or not, so that two runs of a model tell what clipping would have cut and
whether the model trains without it.

- `gradient_norm_run`: `updates` updates of the recipe in this process (no Accelerate, one process), each update's
  gradient norm and loss, and `norm_statistics` of them.
- `norm_statistics`: median, 99th percentile and maximum of the norms, and the updates where the loss or the norm
  jumped (spikes) or was not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn.utils import clip_grad_norm_

from ..data.batching import collate
from ..data.prepared import sequence_lengths
from ..training.loss import training_loss
from ..training.optim import optimizer_and_schedule
from ..training.updates import plan_epoch

# A spike is measured against the median of this many updates before it: long enough that one noisy update does not
# move the median, short enough to follow the loss as it falls in the first hundreds of updates.
SPIKE_WINDOW = 20
# A loss 1.5x the recent median is neither the noise between batches of the same updates nor a slow drift: it is the
# jump that a step too large for the weights makes.
LOSS_SPIKE_FACTOR = 1.5
# A norm an order of magnitude above the recent ones is an explosion, the event that clipping exists for; ordinary
# differences between batches stay well below that.
NORM_SPIKE_FACTOR = 10.0


def norm_statistics(
    norms: Sequence[float], losses: Sequence[float], *, spike_factor: float = LOSS_SPIKE_FACTOR
) -> dict:
    """Summary of a run's per-update gradient norms and losses (parallel sequences, update 1 first).

    - `norm_median`, `norm_p99`, `norm_max`: the median, 99th percentile (`numpy.percentile`, linear interpolation)
      and maximum of the finite gradient norms; None when no norm is finite.
    - `non_finite_updates`: how many updates have a loss or a gradient norm that is NaN or infinite.
    - `loss_spikes`: the update numbers (1-based) whose loss exceeds `spike_factor` (default 1.5) times the median of
      the `SPIKE_WINDOW` (20) finite losses before it; an update is judged only once 20 finite losses precede it.
    - `norm_spikes`: the update numbers whose gradient norm exceeds `NORM_SPIKE_FACTOR` (10) times the median of the
      20 finite norms before it, judged likewise once 20 exist.

    "Exceeds" is strict. A non-finite value is never a spike (it is counted in `non_finite_updates`) and is left out
    of the windows of the updates after it.
    """
    if len(norms) != len(losses):
        raise ValueError(f"got {len(norms)} gradient norms but {len(losses)} losses; they must be parallel")
    if not spike_factor > 1:
        raise ValueError(f"spike_factor must be above 1, got {spike_factor}")
    finite = [float(n) for n in norms if math.isfinite(n)]
    non_finite = sum(not (math.isfinite(n) and math.isfinite(loss)) for n, loss in zip(norms, losses, strict=True))
    return {
        "norm_median": float(np.median(finite)) if finite else None,
        "norm_p99": float(np.percentile(finite, 99)) if finite else None,
        "norm_max": max(finite) if finite else None,
        "non_finite_updates": non_finite,
        "loss_spikes": _spikes(losses, spike_factor),
        "norm_spikes": _spikes(norms, NORM_SPIKE_FACTOR),
    }


def _spikes(values: Sequence[float], factor: float) -> list[int]:
    """The update numbers (1-based) whose value exceeds `factor` times the median of the `SPIKE_WINDOW` finite values
    before it."""
    spikes, window = [], []
    for update, value in enumerate(values, start=1):
        if not math.isfinite(value):
            continue
        if len(window) == SPIKE_WINDOW and value > factor * float(np.median(window)):
            spikes.append(update)
        window = [*window, float(value)][-SPIKE_WINDOW:]
    return spikes


def _significant(value: float, digits: int = 4) -> float:
    """`value` rounded to `digits` significant digits (NaN and infinities as they are)."""
    return float(f"{value:.{digits}g}")


def gradient_norm_run(
    model,
    train_set,
    train_args,
    *,
    pad_token_id: int,
    d_model: int,
    clip_norm: float | None,
    updates: int,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Trains `model` (as built, usually at initialisation) for `updates` updates of the recipe and records the total
    gradient norm of each, before clipping.

    An update is one of `vaswani_hf.training.loop`'s, in one process: the micro-batches of an update of `plan_epoch`
    (`train_args.max_tokens`, `train_args.update_tokens`), each `collate`d from `train_set` (a tokenized dataset with
    `input_ids` and `labels`), its `training_loss` (`train_args.label_smoothing`, divided by the update's target
    tokens) back-propagated; then the norm, clipping to `clip_norm`, the optimizer's and the schedule's step
    (`optimizer_and_schedule(..., train_args, d_model)`: Eq. 3 or a constant rate). The plan runs on into further
    epochs if `updates` needs them. `clip_norm` decides the clipping (None: none), whatever `train_args.clip_norm`
    says; `seed` decides the data order and dropout. The model trains on the device and in the dtype it has (no autocast).

    The run stops at the first update whose loss or gradient norm is not finite, before its optimizer step: the
    recipe would take that step, and every weight would be lost after it.

    Returns `clip_norm`, `updates` (the updates run), `norms` and `losses` (one per update run, the loss as the update's
    per-target-token mean, both to 4 significant digits), `first_non_finite` (the number, 1-based, of the update that
    stopped the run, or None) and `norm_statistics` of the recorded values (its floats to 4 significant digits).
    """
    if updates < 1:
        raise ValueError(f"updates must be at least 1, got {updates}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm}")
    log = log or (lambda message: None)
    device = next(model.parameters()).device
    torch.manual_seed(seed)  # dropout
    optimizer, scheduler = optimizer_and_schedule(model.parameters(), train_args, d_model)
    src_lengths, tgt_lengths = sequence_lengths(train_set, "input_ids"), sequence_lengths(train_set, "labels")
    # clip_grad_norm_ measures the norm either way; with an infinite limit its scale factor is 1 and nothing changes.
    max_norm = float("inf") if clip_norm is None else float(clip_norm)
    log_every = max(1, updates // 10)

    norms, losses, first_non_finite = [], [], None
    model.train()
    epoch = 0
    while len(norms) < updates and first_non_finite is None:
        plan = plan_epoch(
            src_lengths, tgt_lengths, max_tokens=train_args.max_tokens, update_tokens=train_args.update_tokens,
            seed=seed, epoch=epoch,
        )  # fmt: skip
        if not plan:
            raise ValueError(f"{len(train_set)} training pairs make no update: the training set is empty")
        for update in plan[: updates - len(norms)]:
            update_loss = torch.zeros((), device=device)
            for indices in update.micro_batches:
                batch = {k: v.to(device) for k, v in collate(train_set[indices], pad_token_id).items()}
                # Divided by the update's target tokens: the summed gradient is that of the update's per-token mean,
                # as in training, so the norms are those the recipe's optimizer sees.
                loss = training_loss(model, batch, train_args.label_smoothing, update.target_tokens)
                loss.backward()
                update_loss += loss.detach()
            norm = clip_grad_norm_(model.parameters(), max_norm=max_norm).item()
            loss_value = update_loss.item()
            norms.append(norm)
            losses.append(loss_value)
            number = len(norms)
            if not (math.isfinite(norm) and math.isfinite(loss_value)):
                first_non_finite = number
                optimizer.zero_grad(set_to_none=True)
                log(f"update {number}: loss {loss_value:.4g}, gradient norm {norm:.4g}: not finite, run stopped")
                break
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if number % log_every == 0 or number == updates:
                log(f"update {number}/{updates}: loss {loss_value:.4g}, gradient norm {norm:.4g}")
        epoch += 1

    norms, losses = [_significant(n) for n in norms], [_significant(loss) for loss in losses]
    statistics = norm_statistics(norms, losses)
    for key in ("norm_median", "norm_p99", "norm_max"):
        if statistics[key] is not None:
            statistics[key] = _significant(statistics[key])
    return {
        "clip_norm": clip_norm,
        "updates": len(norms),
        "norms": norms,
        "losses": losses,
        "first_non_finite": first_non_finite,
        **statistics,
    }
