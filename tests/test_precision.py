"""Every precision: fp32, bf16 and fp16 weights through a forward pass, generate() (greedy, and the paper's beam 4),
the translation pipeline, a training step and a save/load round trip, on the trained toy model.

On a CPU these run with PyTorch's CPU kernels (bf16 through AMX where the processor has it); the same tests run on a
GPU where one is present (`VASWANI_TEST_DEVICE=cuda`).
"""

import copy
import os

import pytest
import torch

from vaswani_hf import TranslationPipeline, VaswaniForConditionalGeneration

from toy_task import BOS, as_text, pad_batch, toy_examples, word_tokenizer

DEVICE = os.environ.get("VASWANI_TEST_DEVICE", "cpu")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Logits of the trained toy model (about +-20) against fp32: the rounding of 8- and 11-bit mantissas over two layers.
LOGIT_TOLERANCE = {"fp32": 1e-5, "bf16": 0.5, "fp16": 0.1}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy_batch():
    sources, targets = toy_examples([3, 8, 5, 6, 4, 7], torch.Generator().manual_seed(21))
    input_ids, attention_mask = pad_batch(sources)
    return input_ids.to(DEVICE), attention_mask.to(DEVICE), sources, targets


@pytest.fixture(scope="module", params=list(DTYPES))
def dtype_name(request):
    return request.param


@pytest.fixture(scope="module")
def saved_toy_model(trained_toy_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("toy_fp32")
    trained_toy_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_in_dtype(saved_toy_model, dtype_name):
    """The trained toy model loaded as users load half precision: `from_pretrained(..., dtype=...)`."""
    dtype = DTYPES[dtype_name]
    model = VaswaniForConditionalGeneration.from_pretrained(saved_toy_model, dtype=dtype).to(DEVICE).eval()
    assert all(p.dtype == dtype for p in model.parameters())
    return model


def test_forward_computes_in_the_weights_dtype(model_in_dtype, trained_toy_model, toy_batch, dtype_name):
    input_ids, attention_mask, sources, targets = toy_batch
    labels, _ = pad_batch(targets)
    with torch.no_grad():
        output = model_in_dtype(input_ids=input_ids, attention_mask=attention_mask, labels=labels.to(DEVICE))
        reference = trained_toy_model.to(DEVICE)(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert output.logits.dtype == DTYPES[dtype_name]
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.loss)
    torch.testing.assert_close(
        output.logits.float(),
        reference.logits,
        atol=LOGIT_TOLERANCE[dtype_name],
        rtol=0.02 if dtype_name != "fp32" else 0,
    )


def test_model_cast_after_building_also_runs(trained_toy_model, toy_batch, dtype_name):
    """`model.to(dtype)`, the other way users get half precision (the sinusoid table is a buffer, cast with it)."""
    input_ids, attention_mask, _, _ = toy_batch
    model = copy.deepcopy(trained_toy_model).to(DEVICE, DTYPES[dtype_name])
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids[:, :3]).logits
    assert logits.dtype == DTYPES[dtype_name] and torch.isfinite(logits).all()


@pytest.mark.parametrize("decoding", [dict(num_beams=1), {}], ids=["greedy", "paper_beam4"])
def test_generate_gives_the_toy_answers_in_every_precision(model_in_dtype, toy_batch, decoding, dtype_name):
    """Greedy and the paper's decoding (beam 4, GNMT penalty, input + 50) give the toy task's answers in every
    precision, and cached decoding equals uncached in that precision too."""
    input_ids, attention_mask, _, targets = toy_batch
    outputs = {
        use_cache: model_in_dtype.generate(input_ids, attention_mask=attention_mask, use_cache=use_cache, **decoding)
        for use_cache in (True, False)
    }
    assert torch.equal(outputs[True], outputs[False])
    decoded = [row.tolist()[1 : row.tolist().index(2) + 1] if 2 in row.tolist() else [] for row in outputs[True]]
    assert all(row[0] == BOS for row in outputs[True].tolist())
    correct = sum(output == target for output, target in zip(decoded, targets, strict=True))
    assert correct >= len(targets) - 1, decoded


def test_pipeline_translates_in_every_precision(model_in_dtype, toy_batch):
    _, _, sources, targets = toy_batch
    translator = TranslationPipeline(
        model=model_in_dtype, tokenizer=word_tokenizer(), task="translation", device=DEVICE
    )
    results = translator([as_text(source) for source in sources], batch_size=4)
    correct = sum(r["translation_text"] == as_text(t) for r, t in zip(results, targets, strict=True))
    assert correct >= len(targets) - 1, results


def test_a_training_step_in_the_weights_dtype(model_in_dtype, toy_batch, dtype_name):
    model = copy.deepcopy(model_in_dtype).train()
    input_ids, attention_mask, _, targets = toy_batch
    labels, _ = pad_batch(targets)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels.to(DEVICE)).loss
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)  # the loss is computed in float32 from any logits
    assert all(p.grad is not None and p.grad.dtype == DTYPES[dtype_name] for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    assert any(not torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_save_and_load_keep_the_dtype_and_the_weights(model_in_dtype, dtype_name, tmp_path, toy_batch):
    model_in_dtype.save_pretrained(tmp_path)
    loaded = VaswaniForConditionalGeneration.from_pretrained(tmp_path, dtype="auto").to(DEVICE)
    assert loaded.config.dtype == DTYPES[dtype_name]
    for (name, saved), (_, reloaded) in zip(
        model_in_dtype.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert reloaded.dtype == saved.dtype and torch.equal(reloaded, saved), name
    input_ids, attention_mask, _, _ = toy_batch
    assert torch.equal(
        loaded.generate(input_ids, attention_mask=attention_mask),
        model_in_dtype.generate(input_ids, attention_mask=attention_mask),
    )
