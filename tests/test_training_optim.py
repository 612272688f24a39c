"""Eq. 3 (vaswani_hf.training.optim): the paper's Adam and its learning rate, warm-up then inverse square root."""

import pytest
import torch

from vaswani_hf.training.optim import noam_lambda, noam_schedule, paper_adam


def test_eq3_values_and_first_update():
    d_model, warmup = 512, 4000
    model = torch.nn.Linear(2, 2)
    optimizer = paper_adam(model.parameters())
    schedule = noam_schedule(optimizer, d_model, warmup)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98) and optimizer.param_groups[0]["eps"] == 1e-9
    rates = []
    for _ in range(2 * warmup):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # The lr used by update n (1-based) is Eq. 3 at n: never 0 at the first update.
    for n in (1, 2, 100, warmup, warmup + 1, 2 * warmup):
        assert rates[n - 1] == pytest.approx(d_model**-0.5 * min(n**-0.5, n * warmup**-1.5), rel=1e-12)
    assert rates[0] > 0
    assert max(range(len(rates)), key=rates.__getitem__) == warmup - 1  # peak at update `warmup`


def test_eq3_scale_and_bad_arguments():
    model = torch.nn.Linear(2, 2)
    optimizer = paper_adam(model.parameters(), lr_scale=2.0)
    noam_schedule(optimizer, 256, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * noam_lambda(256, 10)(0))
    with pytest.raises(ValueError, match="warmup_steps"):
        noam_lambda(256, 0)
