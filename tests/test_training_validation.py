"""The validation loss during training (vaswani_hf.training.validation)."""

import numpy as np
import pytest
import torch

from vaswani_hf import VaswaniForConditionalGeneration


def test_validation_loss_is_the_per_token_cross_entropy(tiny_config):
    from accelerate import Accelerator
    from datasets import Dataset

    from vaswani_hf.training.validation import validation_loss

    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config()).eval()
    rng = np.random.default_rng(0)
    rows = [
        {"input_ids": rng.integers(4, 64, n).tolist() + [2], "labels": rng.integers(4, 64, m).tolist() + [2]}
        for n, m in [(3, 5), (7, 2), (4, 4), (9, 6), (1, 1)]
    ]
    metrics = validation_loss(
        model,
        Dataset.from_list(rows),
        max_tokens=16,
        pad_token_id=0,
        accelerator=Accelerator(cpu=True),
        label_smoothing=0.1,
    )
    # The reference: each pair on its own, summed over all target tokens.
    nll, smoothed, tokens = 0.0, 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor(row["labels"])
            logits = model(input_ids=torch.tensor([row["input_ids"]]), labels=labels[None]).logits[0]
            nll += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            smoothed += torch.nn.functional.cross_entropy(logits, labels, reduction="sum", label_smoothing=0.1).item()
            tokens += len(row["labels"])
    assert metrics["valid/tokens"] == tokens
    assert metrics["valid/nll"] == pytest.approx(nll / tokens, rel=1e-5)
    assert metrics["valid/ppl"] == pytest.approx(np.exp(nll / tokens), rel=1e-5)
    assert metrics["valid/loss"] == pytest.approx(smoothed / tokens, rel=1e-5)
