"""The training loss (vaswani_hf.training.loss): label-smoothed cross-entropy over the target tokens of an update."""

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
