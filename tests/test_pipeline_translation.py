"""Tests for vaswani_hf.pipeline_translation.TranslationPipeline, with a tiny local MarianMTModel (no Hub access)."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

from vaswani_hf.pipeline_translation import TranslationPipeline

WORDS = (  # noqa: SIM905
    "the a cat dog house tree red blue green small big runs sleeps eats sees is on in under and with "
    "der die das katze hund haus baum rot blau klein gross"
).split()
MODEL_MAX_LENGTH = 16
MAX_POSITIONS = 64


def make_tokenizer(model_max_length=MODEL_MAX_LENGTH):
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    kwargs = {"model_max_length": model_max_length} if model_max_length is not None else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", **kwargs
    )


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        forced_eos_token_id=None,
        # Larger random weights and no embedding scaling, so that the random model's output depends on its input
        # (with the defaults every input gives the same output, and the batching tests would prove nothing).
        init_std=0.3,
        scale_embedding=False,
    )
    model = MarianMTModel(config).eval()
    # Keep the random model's outputs short (the pipeline must not impose a length of its own).
    model.generation_config.max_length = 10
    model.generation_config.num_beams = 1
    return model


@pytest.fixture
def pipe(model, tokenizer):
    return TranslationPipeline(model=model, tokenizer=tokenizer, device="cpu")


@pytest.fixture
def generate_calls(model, monkeypatch):
    """Records the kwargs of every `model.generate` call, still running the real generate."""
    calls = []
    original = model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    return calls


TEXTS = ["the cat sees a dog", "a small red house", "the big dog sleeps under the green tree"]


def test_single_string(pipe):
    result = pipe("the cat sees a dog")
    assert isinstance(result, list) and len(result) == 1
    assert set(result[0]) == {"translation_text"}
    assert isinstance(result[0]["translation_text"], str)
    assert result[0]["translation_text"] != ""


def test_task_argument_and_tuple_input(model, tokenizer):
    pipe = TranslationPipeline(model=model, tokenizer=tokenizer, task="translation", device="cpu")
    assert pipe.task == "translation"
    assert pipe(tuple(TEXTS[:2])) == pipe(TEXTS[:2])


def test_list_batched_equals_unbatched(pipe):
    unbatched = pipe(TEXTS, batch_size=1)
    batched = pipe(TEXTS, batch_size=2)
    # 4.x shape: a list of strings gives a flat list of dicts when each input has one result.
    assert len(unbatched) == 3 and all(isinstance(r, dict) for r in unbatched)
    assert len({r["translation_text"] for r in unbatched}) == 3  # the outputs depend on the inputs
    assert batched == unbatched
    assert unbatched == [pipe(text)[0] for text in TEXTS]
    # Token ids too (padding of the batch removed).
    ids_unbatched = pipe(TEXTS, batch_size=1, return_tensors=True)
    ids_batched = pipe(TEXTS, batch_size=3, return_tensors=True)
    assert ids_batched == ids_unbatched


def test_batched_outputs_of_different_lengths(pipe):
    # Make generation stop at different lengths for different inputs by using as EOS a token that only some outputs
    # contain: inside a batch the shorter outputs are padded, and that padding must not show in the results.
    reference = [r["translation_token_ids"] for r in pipe(TEXTS, return_tensors=True)]

    def stops_for(token):
        return [ids.index(token, 1) + 1 if token in ids[1:] else len(ids) for ids in reference]

    candidates = sorted({token for ids in reference for token in ids[1:]})
    stop = max(candidates, key=lambda token: len(set(stops_for(token))))
    stops = stops_for(stop)
    assert len(set(stops)) > 1
    unbatched = pipe(TEXTS, batch_size=1, return_tensors=True, return_text=True, eos_token_id=stop)
    batched = pipe(TEXTS, batch_size=3, return_tensors=True, return_text=True, eos_token_id=stop)
    assert batched == unbatched
    assert [len(r["translation_token_ids"]) for r in batched] == stops
    assert [r["translation_token_ids"] for r in batched] == [ids[:n] for ids, n in zip(reference, stops, strict=True)]


def test_return_tensors_and_text(pipe, model):
    ids_only = pipe("a small red house", return_tensors=True)
    assert set(ids_only[0]) == {"translation_token_ids"}
    ids = ids_only[0]["translation_token_ids"]
    assert isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    assert ids[0] == model.generation_config.decoder_start_token_id
    both = pipe("a small red house", return_tensors=True, return_text=True)
    assert both[0]["translation_token_ids"] == ids
    assert both[0]["translation_text"] == pipe("a small red house")[0]["translation_text"]
    assert both[0]["translation_text"] == pipe.tokenizer.decode(ids, skip_special_tokens=True)
    with pytest.raises(ValueError):
        pipe("a small red house", return_text=False)


def test_max_new_tokens_bounds_output(pipe, tokenizer, model, generate_calls):
    for max_new in (1, 3):
        result = pipe(TEXTS, batch_size=2, max_new_tokens=max_new, return_tensors=True, return_text=True)
        for record in result:
            # decoder start token + at most `max_new` generated tokens
            assert 1 <= len(record["translation_token_ids"]) <= 1 + max_new
            n_words = len(tokenizer(record["translation_text"], add_special_tokens=False)["input_ids"])
            assert n_words <= max_new
    assert all(call["max_new_tokens"] in (1, 3) for call in generate_calls)
    # Given at init, it applies to every call; a call can override it.
    pipe_init = TranslationPipeline(model=model, tokenizer=tokenizer, device="cpu", max_new_tokens=2)
    assert len(pipe_init("the cat", return_tensors=True)[0]["translation_token_ids"]) <= 3
    assert generate_calls[-1]["max_new_tokens"] == 2
    pipe_init("the cat", max_new_tokens=1)
    assert generate_calls[-1]["max_new_tokens"] == 1


def test_generate_kwargs_routed(pipe, generate_calls):
    pipe("the cat", generate_kwargs={"num_beams": 2, "length_penalty": 0.6}, early_stopping=True, max_length=7)
    call = generate_calls[-1]
    assert call["num_beams"] == 2 and call["length_penalty"] == 0.6 and call["early_stopping"] is True
    # `max_length` keeps its 4.x meaning: generation length, not input truncation.
    assert call["max_length"] == 7
    assert call["input_ids"].shape[-1] == 3  # "the cat </s>" untouched
    assert set(call) >= {"input_ids", "attention_mask"}


def test_model_generation_config_supplies_defaults(pipe, generate_calls):
    pipe("the cat sees a dog")
    call = generate_calls[-1]
    # No length or beam setting of the pipeline's own: the model's generation_config decides.
    for key in ("max_length", "max_new_tokens", "num_beams", "length_penalty", "do_sample"):
        assert key not in call
    # The model's generation config has a pad token id, so the pipeline adds no `pad_token_id` either.
    assert "pad_token_id" not in call


def test_num_return_sequences(pipe):
    result = pipe("the cat sees a dog", num_beams=2, num_return_sequences=2)
    assert len(result) == 2 and all(isinstance(r["translation_text"], str) for r in result)
    # A list with several results per input gives a list of lists (4.x shape).
    results = pipe(TEXTS[:2], num_beams=2, num_return_sequences=2, batch_size=2)
    assert len(results) == 2 and all(isinstance(r, list) and len(r) == 2 for r in results)
    assert results == pipe(TEXTS[:2], num_beams=2, num_return_sequences=2, batch_size=1)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_string(pipe, generate_calls, text):
    assert pipe(text) == [{"translation_text": ""}]
    assert pipe(text, return_tensors=True) == [{"translation_token_ids": []}]
    assert generate_calls == []
    assert pipe(text, num_beams=2, num_return_sequences=2) == [{"translation_text": ""}] * 2
    assert generate_calls == []


def test_mixed_empty_and_non_empty(pipe, generate_calls):
    texts = ["", TEXTS[0], "  ", TEXTS[2], TEXTS[1]]
    expected = [
        {"translation_text": ""},
        pipe(TEXTS[0])[0],
        {"translation_text": ""},
        pipe(TEXTS[2])[0],
        pipe(TEXTS[1])[0],
    ]
    generate_calls.clear()
    for batch_size in (1, 2, 5):
        assert pipe(texts, batch_size=batch_size) == expected
    # Empty items never reach the model: 3 non-empty items per pass.
    assert sum(call["input_ids"].shape[0] for call in generate_calls) == 9
    assert pipe(["", ""], batch_size=2) == [{"translation_text": ""}] * 2
    assert pipe(["", ""], batch_size=2, num_beams=2, num_return_sequences=2) == [[{"translation_text": ""}] * 2] * 2


def test_empty_list(pipe):
    assert pipe([]) == []
    assert pipe([], batch_size=4) == []


@pytest.mark.parametrize("bad", [5, None, 3.5, b"bytes", {"text": "the cat"}, ["the cat", 7]])
def test_non_string_raises_type_error(pipe, bad):
    with pytest.raises(TypeError) as info:
        pipe(bad)
    expected_type = "int" if isinstance(bad, list) else type(bad).__name__
    assert expected_type in str(info.value)
    assert "str" in str(info.value)


def test_generator_input_streams(pipe):
    outputs = pipe((text for text in ["", *TEXTS]), batch_size=2)
    assert not isinstance(outputs, list)
    assert list(outputs) == [[{"translation_text": ""}]] + [pipe(text) for text in TEXTS]
    with pytest.raises(TypeError):
        list(pipe(x for x in ["the cat", 3]))


def test_very_long_input_is_truncated(pipe, generate_calls):
    long_text = " ".join(WORDS * 10)  # ~300 tokens, beyond model_max_length and max_position_embeddings
    assert len(pipe.tokenizer(long_text)["input_ids"]) > MAX_POSITIONS
    result = pipe(long_text)
    assert isinstance(result[0]["translation_text"], str)
    assert generate_calls[-1]["input_ids"].shape[-1] == MODEL_MAX_LENGTH
    result = pipe([long_text, "the cat", ""], batch_size=3)
    assert len(result) == 3 and result[2] == {"translation_text": ""}
    assert generate_calls[-1]["input_ids"].shape == (2, MODEL_MAX_LENGTH)
    # Input truncation length of one's own, through the tokenizer kwargs.
    pipe(long_text, tokenizer_encode_kwargs={"max_length": 5})
    assert generate_calls[-1]["input_ids"].shape[-1] == 5


def test_long_input_without_tokenizer_max_length_uses_model_positions(model, generate_calls):
    tokenizer = make_tokenizer(model_max_length=None)
    assert tokenizer.model_max_length > 10**20
    pipe = TranslationPipeline(model=model, tokenizer=tokenizer, device="cpu")
    pipe(" ".join(WORDS * 10))
    assert generate_calls[-1]["input_ids"].shape[-1] == MAX_POSITIONS


def test_truncation_never_exceeds_the_model_positions(model, generate_calls):
    """A tokenizer's `model_max_length` (1024 from `train_shared_bpe`) above the model's `max_position_embeddings` must
    not let a long input through: the input is cut to the positions the model has."""
    tokenizer = make_tokenizer(model_max_length=1024)
    pipe = TranslationPipeline(model=model, tokenizer=tokenizer, device="cpu")
    result = pipe(" ".join(WORDS * 10), max_new_tokens=2)
    assert generate_calls[-1]["input_ids"].shape[-1] == MAX_POSITIONS
    assert isinstance(result[0]["translation_text"], str)
