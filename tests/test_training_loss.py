"""The training loss (vaswani_hf.training.loss): label-smoothed cross-entropy over the target tokens of an update."""

import pytest
import torch

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.data.batching import collate
from vaswani_hf.training.loss import label_smoothed_loss, training_loss


def test_training_loss_is_label_smoothed_cross_entropy_over_the_update(tiny_config):
    """§5.4 in the recipe: PyTorch's label smoothing on the model's logits, summed over target tokens and divided by
    the update's token count; the decoder reads the labels shifted right, as in the model's own loss."""
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config()).train()
    batch = collate({"input_ids": [[5, 6, 7, 2], [8, 2]], "labels": [[9, 10, 2], [11, 12, 13, 14, 2]]}, pad_token_id=0)
    loss = training_loss(model, batch, 0.1, num_items_in_batch=20)
    logits = model(**batch).logits
    reference = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100, label_smoothing=0.1, reduction="sum"
    )
    torch.testing.assert_close(loss, reference / 20)
    # Without smoothing and with the batch's own count it is the model's loss.
    torch.testing.assert_close(training_loss(model, batch, 0.0), model(**batch).loss)
    smoothed, plain = label_smoothed_loss(logits, batch["labels"], 0.1).item(), model(**batch).loss.item()
    assert abs(smoothed - plain) > 1e-3  # the smoothing is there


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize("chunk_values", [64, 2**17])
def test_label_smoothed_loss_matches_pytorch_value_and_gradient(monkeypatch, dtype, epsilon, chunk_values):
    """The fused loss against `cross_entropy(label_smoothing=...)` on float32 logits: the same sum and the same gradient,
    in the logits' dtype, with ignored positions, and with chunks of rows that do not divide the batch (64 values are
    chunks of 2 rows of a 30-word vocabulary)."""
    import vaswani_hf.training.loss as loss_module

    monkeypatch.setattr(loss_module, "_CHUNK_VALUES", chunk_values)
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(3, 7, 30, generator=generator)).to(dtype).requires_grad_()
    labels = torch.randint(0, 30, (3, 7), generator=generator)
    labels[0, 4:] = -100
    labels[2, :] = -100
    upstream = 2.5  # a gradient other than 1 flows into the loss
    loss = label_smoothed_loss(logits, labels, epsilon, num_items_in_batch=11)
    (grad,) = torch.autograd.grad(upstream * loss, logits)
    reference = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, label_smoothing=epsilon, reduction="sum"
    )
    (reference_grad,) = torch.autograd.grad(upstream * reference / 11, logits)
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    torch.testing.assert_close(loss, reference / 11)
    torch.testing.assert_close(grad, reference_grad)
    assert grad[2].abs().max() == 0  # ignored positions get no gradient


def test_label_smoothed_loss_of_a_batch_without_targets_is_zero_over_one():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    loss = label_smoothed_loss(logits, torch.full((2, 3), -100), 0.1, num_items_in_batch=1)
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().max() == 0
