"""What `vaswani_hf.transformers_adapter` assumes about transformers, checked against the installed release.

Each failure names the transformers version: when one of these fails after an upgrade, the adapter (and only the
adapter) needs changing. The decoding tests in test_generation_vaswani.py check the results; these check the
mechanisms.
"""

import copy
import inspect
import warnings

import pytest
import torch
import transformers
from transformers import GenerationMixin, pipeline
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.utils import logging as transformers_logging

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf import transformers_adapter as adapter
from vaswani_hf.generation_vaswani import DecodingCache

VERSION = f"transformers {transformers.__version__}"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    return VaswaniForConditionalGeneration(tiny_config()).eval()


@pytest.fixture
def source():
    input_ids = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]])
    return input_ids, (input_ids != 0).long()


def spy_forward(monkeypatch, model) -> list[dict]:
    """The keyword arguments of every forward call of `model`, with `seen_length`: the length of the cache it was
    given, at the time of the call."""
    calls = []
    forward = model.forward

    def spy(*args, **kwargs):
        cache = kwargs.get(adapter.CACHE_ARG)
        calls.append({**kwargs, "seen_length": cache.get_seq_length() if cache is not None else None})
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    return calls


# ---------------------------------------------------------------------------------------------------------------------
# 1. The name of the decoding cache
# ---------------------------------------------------------------------------------------------------------------------
def test_the_cache_name_is_the_one_the_outputs_use():
    assert adapter.CACHE_ARG in Seq2SeqLMOutput.__dataclass_fields__, VERSION
    assert adapter.CACHE_ARG in ("cache", adapter.LEGACY_CACHE_ARG), VERSION


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generate_hands_the_model_our_cache_under_that_name(monkeypatch, model, source, num_beams):
    """Every decoding step after the first receives the DecodingCache under `CACHE_ARG`, filled by the steps before
    it. (transformers 5.24 passed it as `cache=` to models that only read `past_key_values=`.)"""
    input_ids, attention_mask = source
    calls = spy_forward(monkeypatch, model)
    model.generate(input_ids, attention_mask=attention_mask, num_beams=num_beams, max_new_tokens=6)
    assert len(calls) >= 3, VERSION
    for step, kwargs in enumerate(calls):
        cache = kwargs.get(adapter.CACHE_ARG)
        assert isinstance(cache, DecodingCache), f"{VERSION}: step {step} got {sorted(kwargs)}"
        assert kwargs["seen_length"] == step, f"{VERSION}: step {step} sees {kwargs['seen_length']} positions"
        if step:
            assert kwargs["decoder_input_ids"].shape[1] == 1, VERSION


def test_the_output_field_holds_the_cache(model, source):
    input_ids, attention_mask = source
    with torch.no_grad():
        output = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids[:, :1])
    assert adapter.output_cache(output) is not None, VERSION
    assert output[adapter.CACHE_ARG] is adapter.output_cache(output), VERSION


def test_the_old_cache_name_still_works_and_warns_only_where_renamed(model, source):
    input_ids, attention_mask = source
    with torch.no_grad():
        first = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=input_ids[:, :1])
        cache = adapter.output_cache(first)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            second = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                decoder_input_ids=input_ids[:, 1:2],
                **{adapter.LEGACY_CACHE_ARG: cache},
            )
    assert adapter.output_cache(second).get_seq_length() == 2, VERSION
    deprecations = [w for w in caught if f"`{adapter.LEGACY_CACHE_ARG}` is deprecated" in str(w.message)]
    assert len(deprecations) == (adapter.CACHE_ARG != adapter.LEGACY_CACHE_ARG), VERSION
    with pytest.raises(ValueError, match="not both"):
        model(
            input_ids=input_ids, decoder_input_ids=input_ids[:, :1], cache=cache, past_key_values=copy.deepcopy(cache)
        )


def test_decoding_and_training_emit_no_deprecation_warning(model, source, capfd):
    """Nothing this package does on its own warns about deprecated transformers API (logged or raised)."""
    input_ids, attention_mask = source
    transformers_logging.set_verbosity_warning()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for num_beams in (1, 4):
            model.generate(input_ids, attention_mask=attention_mask, num_beams=num_beams, max_new_tokens=4)
        model.generate(input_ids, attention_mask=attention_mask, do_sample=True, max_new_tokens=4)
        model.train()(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids).loss.backward()
    messages = [str(w.message) for w in caught] + capfd.readouterr().err.splitlines()
    assert not [m for m in messages if "deprecat" in m.lower()], f"{VERSION}: {messages}"


# ---------------------------------------------------------------------------------------------------------------------
# 2. The GNMT length penalty through the beam search's `length ** length_penalty`
# ---------------------------------------------------------------------------------------------------------------------
def test_beam_search_is_the_hook_the_adapter_wraps():
    method = getattr(GenerationMixin, "_beam_search", None)
    assert method is not None, f"{VERSION} has no GenerationMixin._beam_search: update GNMTBeamSearchMixin"
    assert "generation_config" in inspect.signature(method).parameters, VERSION
    assert VaswaniForConditionalGeneration.__mro__.index(adapter.GNMTBeamSearchMixin) < (
        VaswaniForConditionalGeneration.__mro__.index(GenerationMixin)
    )


def test_beam_search_divides_by_length_to_the_penalty(monkeypatch, model, source):
    """The beam search uses `length_penalty` only as `length ** length_penalty`: a penalty object sees every length
    the search scores with (1 to the longest output), and the returned scores follow its values."""
    input_ids, attention_mask = source
    seen = []

    class Recording(adapter.GNMTLengthPenalty):
        def __rpow__(self, length):
            seen.append(int(length))
            return super().__rpow__(length)

    monkeypatch.setattr(adapter, "GNMTLengthPenalty", Recording)
    output = model.generate(
        input_ids,
        attention_mask=attention_mask,
        num_beams=4,
        max_new_tokens=6,
        return_dict_in_generate=True,
        output_scores=True,
    )
    assert seen, f"{VERSION}: beam search never raised a length to the penalty"
    assert set(seen) >= set(range(1, 6)), f"{VERSION}: lengths seen {sorted(set(seen))}"
    assert output.sequences_scores is not None, VERSION


# ---------------------------------------------------------------------------------------------------------------------
# 3. The translation task
# ---------------------------------------------------------------------------------------------------------------------
def test_the_translation_task_reaches_our_pipeline(model, tmp_path):
    from vaswani_hf import TranslationPipeline, train_shared_bpe

    removed = getattr(transformers.pipelines, "REMOVED_TASKS", {})
    assert "translation" not in removed, VERSION
    tokenizer = train_shared_bpe(["the house is small", "das Haus ist klein"] * 20, vocab_size=64)
    translator = pipeline("translation", model=model, tokenizer=tokenizer)
    assert isinstance(translator, TranslationPipeline), VERSION
    assert isinstance(translator("the house", max_new_tokens=3)[0]["translation_text"], str)


# ---------------------------------------------------------------------------------------------------------------------
# 4. Refusing assisted decoding of a state that cannot be cropped
# ---------------------------------------------------------------------------------------------------------------------
def test_one_of_the_two_refusals_of_assisted_decoding_is_read():
    """A release reads either the model's `_is_stateful` (up to 5.24) or the cache's `is_croppable` (5.25) when it
    decodes with an assistant; one that reads neither would let assisted decoding crop a recurrent state."""
    from transformers.generation import utils as generation_utils

    source = inspect.getsource(generation_utils)
    if adapter.READS_IS_STATEFUL:
        assert "_is_stateful" in source, VERSION
    else:
        assert "is_croppable" in inspect.getsource(GenerationMixin._assisted_decoding), (
            f"{VERSION} has no `_is_stateful` and its assisted decoding does not read `is_croppable`: "
            "transformers_adapter.StatefulGenerationMixin needs updating"
        )
