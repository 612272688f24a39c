"""Tests of `vaswani_hf.studies.gradient_norms`: the statistics of a run's gradient norms on hand-made sequences, and
short runs of tiny models (the Transformer and the recurrent model) from initialisation, with and without clipping, and
into a loss or gradient that is not finite."""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import tiny_rnn_config
from datasets import Dataset

from vaswani_hf import RNNForConditionalGeneration, VaswaniForConditionalGeneration
from vaswani_hf.studies import gradient_norms
from vaswani_hf.studies.gradient_norms import gradient_norm_run, norm_statistics
from vaswani_hf.training.run_config import TrainArgs

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 32
NAN, INF = float("nan"), float("inf")


def test_norm_statistics_of_finite_values():
    norms = [3.0, 1.0, 2.0, 100.0]
    stats = norm_statistics(norms, [4.0, 3.0, 2.0, 1.0])

    assert stats["norm_median"] == 2.5 and stats["norm_max"] == 100.0
    assert stats["norm_p99"] == pytest.approx(np.percentile(norms, 99)) and 3.0 < stats["norm_p99"] < 100.0
    assert stats["non_finite_updates"] == 0
    # Fewer than 20 updates: none is judged a spike, however large.
    assert stats["loss_spikes"] == [] and stats["norm_spikes"] == []


def test_norm_statistics_finds_spikes_against_the_previous_20_updates():
    # Updates 1-20 set the window; 21 is a spike of both kinds, 22 sits on the limits (not above them), 23 the loss
    # only, 24 the norm only. Update 5 is large but comes before 20 updates exist.
    norms = [1.0] * 4 + [50.0] + [1.0] * 15 + [10.5, 10.0, 1.0, 11.0]
    losses = [2.0] * 4 + [9.0] + [2.0] * 15 + [3.1, 3.0, 3.5, 2.0]
    stats = norm_statistics(norms, losses)

    assert stats["loss_spikes"] == [21, 23]
    assert stats["norm_spikes"] == [21, 24]
    assert stats["norm_median"] == 1.0 and stats["norm_max"] == 50.0
    # The factor of the loss is the caller's.
    assert norm_statistics(norms, losses, spike_factor=1.7)["loss_spikes"] == [23]
    # The window moves: after 20 updates at 10, a norm of 11 is ordinary.
    assert norm_statistics([1.0] * 20 + [10.0] * 20 + [11.0], [1.0] * 41)["norm_spikes"] == []


def test_norm_statistics_counts_and_skips_values_that_are_not_finite():
    norms = [1.0] * 20 + [NAN, 2.0, INF, 20.0]
    losses = [1.0] * 20 + [1.0, INF, 1.0, 1.0]
    stats = norm_statistics(norms, losses)

    # Update 21 (norm NaN), 22 (loss inf) and 23 (norm inf); none is a spike, and none enters a later window.
    assert stats["non_finite_updates"] == 3
    assert stats["norm_spikes"] == [24] and stats["loss_spikes"] == []
    assert stats["norm_median"] == 1.0 and stats["norm_max"] == 20.0
    assert norm_statistics([NAN], [1.0])["norm_median"] is None
    assert norm_statistics([], []) == {
        "norm_median": None, "norm_p99": None, "norm_max": None, "non_finite_updates": 0, "loss_spikes": [],
        "norm_spikes": [],
    }  # fmt: skip
    with pytest.raises(ValueError, match="parallel"):
        norm_statistics([1.0], [])
    with pytest.raises(ValueError, match="spike_factor"):
        norm_statistics([1.0], [1.0], spike_factor=1.0)


def tiny_set(pairs: int = 12, seed: int = 0) -> Dataset:
    """Token ids as the prepared corpus holds them: sources and targets of 3 to 8 ordinary tokens, then </s> (2)."""
    generator = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "labels": []}
    for _ in range(pairs):
        for column in rows:
            length = int(torch.randint(3, 9, (1,), generator=generator))
            rows[column].append([*torch.randint(3, VOCAB, (length,), generator=generator).tolist(), 2])
    return Dataset.from_dict(rows)


def tiny_model(kind: str, tiny_config):
    torch.manual_seed(0)
    if kind == "transformer":
        return VaswaniForConditionalGeneration(tiny_config(vocab_size=VOCAB))
    return RNNForConditionalGeneration(tiny_rnn_config(vocab_size=VOCAB, hidden_size=16, embedding_size=8))


def train_args(**overrides) -> TrainArgs:
    # 2 updates an epoch of tiny_set; a clip_norm here must be ignored, the argument decides.
    settings = dict(max_tokens=40, update_tokens=25, warmup_steps=4, clip_norm=1e-9)
    return TrainArgs(**{**settings, **overrides})


def run(model, args=None, **kwargs):
    kwargs = {"clip_norm": None, "updates": 4, **kwargs}
    d_model = model.config.hidden_size
    return gradient_norm_run(model, tiny_set(), args or train_args(), pad_token_id=0, d_model=d_model, **kwargs)


@pytest.mark.parametrize("kind", ["transformer", "rnn"])
def test_a_run_records_every_update(kind, tiny_config):
    model = tiny_model(kind, tiny_config)
    before = [p.detach().clone() for p in model.parameters()]
    lines = []
    result = run(model, updates=7, log=lines.append)

    # 7 updates take more than one epoch of the plan.
    assert result["updates"] == 7 and result["first_non_finite"] is None and result["clip_norm"] is None
    assert len(result["norms"]) == len(result["losses"]) == 7
    assert all(math.isfinite(n) and n > 0 for n in result["norms"])
    assert all(math.isfinite(x) and x > 0 for x in result["losses"])
    assert result["norms"] == [float(f"{n:.4g}") for n in result["norms"]]
    assert result["norm_max"] == max(result["norms"]) and result["non_finite_updates"] == 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert lines and lines[-1].startswith("update 7/7")
    with pytest.raises(ValueError, match="updates"):
        run(model, updates=0)
    with pytest.raises(ValueError, match="clip_norm"):
        run(model, clip_norm=0.0)


def test_the_recorded_norm_is_the_one_before_clipping(tiny_config, monkeypatch):
    # The gradient's norm as clip_grad_norm_ gets it and as it leaves it, at each update.
    seen = []

    def clip_and_measure(parameters, max_norm):
        parameters = list(parameters)
        norm = clip_grad_norm_(parameters, max_norm)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
        seen.append((max_norm, norm.item(), after.item()))
        return norm

    clip_grad_norm_ = gradient_norms.clip_grad_norm_
    monkeypatch.setattr(gradient_norms, "clip_grad_norm_", clip_and_measure)
    model = tiny_model("transformer", tiny_config)
    unclipped = run(copy.deepcopy(model), updates=3)
    assert [limit for limit, _, _ in seen] == [INF] * 3
    assert all(after == pytest.approx(before, rel=1e-6) for _, before, after in seen)
    seen.clear()

    clipped = run(model, clip_norm=1e-6, updates=3)
    assert clipped["clip_norm"] == 1e-6
    assert [limit for limit, _, _ in seen] == [1e-6] * 3
    # The optimizer got a gradient of norm 1e-6; the run recorded the one before, from the same weights and batch.
    assert all(after == pytest.approx(1e-6, rel=1e-3) for _, _, after in seen)
    assert clipped["norms"] == [float(f"{before:.4g}") for _, before, _ in seen]
    assert clipped["norms"][0] == unclipped["norms"][0] > 1e-3
    assert clipped["losses"][0] == unclipped["losses"][0]


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_a_run_stops_at_the_first_update_that_is_not_finite(where, tiny_config, monkeypatch):
    model = tiny_model("rnn", tiny_config)
    calls = []
    if where == "loss":
        # The third micro-batch's loss, and with it its gradient, is NaN.
        def nan_on_third(*args, **kwargs):
            calls.append(None)
            loss = training_loss(*args, **kwargs)
            return loss * NAN if len(calls) == 3 else loss

        training_loss = gradient_norms.training_loss
        monkeypatch.setattr(gradient_norms, "training_loss", nan_on_third)
    else:
        # The loss stays finite; the third backward's gradient of one weight is infinite.
        def inf_on_third(grad):
            calls.append(None)
            return torch.full_like(grad, INF) if len(calls) == 3 else grad

        next(model.parameters()).register_hook(inf_on_third)
    # One micro-batch an update: the third call is the third update.
    result = run(model, train_args(update_tokens=1), updates=10)

    assert result["first_non_finite"] == result["updates"] == 3 and len(calls) == 3
    assert all(math.isfinite(n) for n in result["norms"][:2]) and not math.isfinite(result["norms"][2])
    assert math.isfinite(result["losses"][2]) == (where == "gradient")
    assert result["non_finite_updates"] == 1 and result["norm_max"] == max(result["norms"][:2])
    # Stopped before the optimizer's step: the weights are those after update 2, finite.
    assert all(torch.isfinite(p).all() for p in model.parameters())
