"""Tests of `vaswani_hf.export.marian`: a post-norm model converted to transformers' MarianMTModel computes the same."""

import pytest
import torch

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.export.marian import stream_order, to_marian

from toy_task import EOS, pad_batch, toy_examples

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_stream_order_maps_the_interleaved_table_onto_marians(tiny_config):
    model = VaswaniForConditionalGeneration(tiny_config(d_model=8, max_position_embeddings=20))
    marian = to_marian(model)
    ours = model.model.encoder.embeddings.embed_positions.table  # (P, d)
    theirs = marian.model.encoder.embed_positions.weight  # (P, d)
    torch.testing.assert_close(ours[:, stream_order(8)], theirs)


@pytest.mark.parametrize("layers", [(1, 1), (2, 3)])
def test_the_converted_model_computes_the_same_logits_and_translations(tiny_config, layers):
    torch.manual_seed(0)
    config = tiny_config(encoder_layers=layers[0], decoder_layers=layers[1], max_position_embeddings=64)
    model = VaswaniForConditionalGeneration(config).eval()
    marian = to_marian(model)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(4, config.vocab_size, (3, 9), generator=generator)
    input_ids[:, -1] = config.eos_token_id
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0  # a padded source
    input_ids[1, 6:] = config.pad_token_id
    labels = torch.randint(4, config.vocab_size, (3, 7), generator=generator)
    with torch.no_grad():
        ours = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
        theirs = marian(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_the_converted_trained_model_translates_the_same(trained_toy_model, num_beams):
    """Decoding through each model's own cache, with the length penalty both have (|Y| ** alpha) and no forced </s>
    at the limit (Marian's default), picks the same tokens."""
    marian = to_marian(trained_toy_model)
    sources, _ = toy_examples([3, 8, 5, 6, 4], torch.Generator().manual_seed(3))
    input_ids, attention_mask = pad_batch(sources)
    settings = dict(num_beams=num_beams, length_penalty=0.6, max_new_tokens=12, do_sample=False)
    ours = trained_toy_model.generate(
        input_ids=input_ids, attention_mask=attention_mask, length_penalty_type="power", **settings
    )
    theirs = marian.generate(input_ids=input_ids, attention_mask=attention_mask, forced_eos_token_id=None, **settings)
    assert ours.tolist() == theirs.tolist()
    # Trained, the model ends its outputs at varied lengths: the comparison covers stopping, not one repeated token.
    assert len({row.index(EOS) for row in ours.tolist() if EOS in row}) > 1


def test_what_marian_cannot_express_is_refused(tiny_config):
    with pytest.raises(ValueError, match="post-norm with sinusoidal positions and tied embeddings"):
        to_marian(VaswaniForConditionalGeneration(tiny_config(norm_first=True)))
    with pytest.raises(ValueError, match="converts a VaswaniForConditionalGeneration"):
        to_marian(torch.nn.Linear(2, 2))
