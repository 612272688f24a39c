"""Tests of `VaswaniForConditionalGeneration.generate()` and the paper's decoding (§6.1): beam size 4, the GNMT length
penalty ((5 + |Y|) / 6) ** 0.6, and a maximum output length of input length + 50, per sentence.

Most tests use a tiny model trained for a few seconds to reverse short token sequences, so that it ends its outputs
with </s> at varied lengths, as a real translation model does. The length-limit tests use a randomly initialised
model whose </s> logit is lowered by 100, so that only the limit can end an output.

Lengths are counted as the paper and the library count them: a source's length is its non-pad tokens including its
</s>; an output's length |Y| is its generated tokens up to and including the first </s>, without the decoder start
token.
"""

import copy
import json

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, GenerationConfig, GenerationMixin
from transformers.cache_utils import DynamicLayer

import vaswani_hf  # noqa: F401  (registers the model with the Auto classes)
from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.generation_vaswani import PAPER_DECODING, DecodingCache, GrowingCacheLayer, one_row_per_group
from vaswani_hf.transformers_adapter import GNMTLengthPenalty

from toy_task import (
    BOS,
    EOS,
    PAD,
    VOCAB,
    as_text,
    pad_batch,
    tiny_config,
    toy_examples,
    word_tokenizer,
)

ALPHA = 0.6
OFFSET = 50

# Content lengths of the padded batches below (each source also ends with </s>). 10 lies outside the training
# lengths (3-8), so that the trained model is unsure there and beams and samples do branch.
BATCH_LENGTHS = (3, 8, 5, 10, 6)
# The batch of the length-limit tests: a short source next to a long one.
LIMIT_LENGTHS = (2, 9, 5)

GREEDY = dict(num_beams=1, do_sample=False)
BEAM = dict(num_beams=4, do_sample=False)
SAMPLE = dict(num_beams=1, do_sample=True, top_k=0)
BEAM_SAMPLE = dict(num_beams=4, do_sample=True, top_k=0)


def generated(row: torch.Tensor) -> list[int]:
    """The generated tokens of one output row: after the decoder start token, up to and including the first </s>
    (what follows it is filling), or all of them where there is no </s>."""
    tokens = row.tolist()
    assert tokens[0] == BOS, f"output does not start with the decoder start token: {tokens}"
    tokens = tokens[1:]
    return tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens


def all_generated(sequences: torch.Tensor) -> list[list[int]]:
    return [generated(row) for row in sequences]


def source_lengths(attention_mask: torch.Tensor) -> list[int]:
    return attention_mask.sum(-1).tolist()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_model(trained_toy_model) -> VaswaniForConditionalGeneration:
    return trained_toy_model


@pytest.fixture(scope="module")
def random_model() -> VaswaniForConditionalGeneration:
    torch.manual_seed(1)
    return VaswaniForConditionalGeneration(tiny_config()).eval()


@pytest.fixture(scope="module")
def endless_model(random_model) -> VaswaniForConditionalGeneration:
    """A random model that never chooses </s> by itself: its </s> logit is lowered by 100 (finite, so that the length
    limit can still force it)."""
    model = copy.deepcopy(random_model)

    def lower_eos(module, args, logits):
        return logits - 100.0 * torch.nn.functional.one_hot(torch.tensor(EOS), VOCAB).to(logits)

    model.lm_head.register_forward_hook(lower_eos)
    return model


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    sources, targets = toy_examples(BATCH_LENGTHS, torch.Generator().manual_seed(7))
    return (*pad_batch(sources), targets)


@pytest.fixture(scope="module")
def limit_batch() -> tuple[torch.Tensor, torch.Tensor]:
    sources, _ = toy_examples(LIMIT_LENGTHS, torch.Generator().manual_seed(11))
    return pad_batch(sources)


# ---------------------------------------------------------------------------------------------------------------------
# The trained fixture is meaningful
# ---------------------------------------------------------------------------------------------------------------------
def test_trained_model_reverses_and_ends_at_varied_lengths(trained_model):
    lengths = [3, 4, 5, 6, 7, 8] * 5
    sources, targets = toy_examples(lengths, torch.Generator().manual_seed(3))
    input_ids, attention_mask = pad_batch(sources)
    outputs = all_generated(trained_model.generate(input_ids, attention_mask=attention_mask, **GREEDY))
    correct = sum(output == target for output, target in zip(outputs, targets, strict=True))
    assert correct >= 0.8 * len(targets), f"only {correct}/{len(targets)} toy examples decoded right"
    assert all(output[-1] == EOS for output in outputs)
    assert len({len(output) for output in outputs}) >= 5, "</s> should come at varied lengths"


# ---------------------------------------------------------------------------------------------------------------------
# 1. Cached and uncached decoding agree
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models_by_attention(trained_model) -> dict[str, VaswaniForConditionalGeneration]:
    models = {}
    for implementation in ("eager", "sdpa"):
        model = copy.deepcopy(trained_model)
        model.set_attn_implementation(implementation)
        assert model.config._attn_implementation == implementation
        models[implementation] = model
    return models


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("mode", [GREEDY, BEAM, SAMPLE, BEAM_SAMPLE], ids=["greedy", "beam", "sample", "beam_sample"])
def test_cached_and_uncached_decoding_agree(models_by_attention, batch, implementation, mode):
    model = models_by_attention[implementation]
    input_ids, attention_mask, _ = batch
    outputs = {}
    for use_cache in (True, False):
        torch.manual_seed(0)
        outputs[use_cache] = model.generate(input_ids, attention_mask=attention_mask, use_cache=use_cache, **mode)
    assert torch.equal(outputs[True], outputs[False]), f"cached:\n{outputs[True]}\nuncached:\n{outputs[False]}"
    assert all(output[-1] == EOS for output in all_generated(outputs[True]))


@pytest.mark.parametrize("batch_size", [1, 4, 13])
@pytest.mark.parametrize("mode", [GREEDY, {}, SAMPLE], ids=["greedy", "paper_beam", "sample"])
def test_cached_decoding_equals_uncached_at_every_batch_size(trained_model, mode, batch_size):
    """generate() with the cache (the default) against without, on the trained model, at the batch sizes of one
    sentence, a small batch, and a batch of odd size with mixed lengths. A cache that `forward` does not receive
    (transformers 5.24 renamed its argument) leaves every step with its last token alone: outputs differ and loop."""
    lengths = [3 + (i * 5) % 6 for i in range(batch_size)]  # 3..8 (the training lengths), mixed
    sources, targets = toy_examples(lengths, torch.Generator().manual_seed(batch_size))
    input_ids, attention_mask = pad_batch(sources)
    outputs = {}
    for use_cache in (True, False):
        torch.manual_seed(0)
        outputs[use_cache] = trained_model.generate(
            input_ids, attention_mask=attention_mask, use_cache=use_cache, **mode
        )
    assert torch.equal(outputs[True], outputs[False]), f"cached:\n{outputs[True]}\nuncached:\n{outputs[False]}"
    if mode is not SAMPLE:  # the decoding is the trained one: most sentences come out reversed
        correct = sum(out == tgt for out, tgt in zip(all_generated(outputs[True]), targets, strict=True))
        assert correct >= 0.6 * batch_size, all_generated(outputs[True])


@pytest.mark.parametrize("batch_size", [1, 4, 13])
def test_pipeline_cached_decoding_equals_uncached(trained_model, batch_size):
    from vaswani_hf import TranslationPipeline

    translator = TranslationPipeline(model=trained_model, tokenizer=word_tokenizer(), task="translation")
    lengths = [3 + (i * 3) % 8 for i in range(13)]
    sources, targets = toy_examples(lengths, torch.Generator().manual_seed(5))
    texts, expected = [as_text(source) for source in sources], [as_text(target) for target in targets]
    cached, uncached = (
        [r["translation_text"] for r in translator(texts, batch_size=batch_size, use_cache=use_cache)]
        for use_cache in (True, False)
    )
    assert cached == uncached
    assert sum(c == e for c, e in zip(cached, expected, strict=True)) >= 8, cached


def test_sampling_samples(trained_model, batch):
    """The sampling runs above compare real samples: another seed gives another output."""
    input_ids, attention_mask, _ = batch
    outputs = []
    for seed in range(4):
        torch.manual_seed(seed)
        outputs.append(all_generated(trained_model.generate(input_ids, attention_mask=attention_mask, **SAMPLE)))
    assert any(other != outputs[0] for other in outputs[1:])


def test_eager_and_sdpa_agree(models_by_attention, batch):
    input_ids, attention_mask, _ = batch
    eager, sdpa = (
        models_by_attention[name].generate(input_ids, attention_mask=attention_mask, **BEAM)
        for name in ("eager", "sdpa")
    )
    assert torch.equal(eager, sdpa)


def test_cached_and_uncached_greedy_agree_at_random_init(random_model, batch):
    """Long outputs (a random model rarely ends early) exercise long caches."""
    input_ids, attention_mask, _ = batch
    cached, uncached = (
        random_model.generate(input_ids, attention_mask=attention_mask, use_cache=use_cache, **GREEDY)
        for use_cache in (True, False)
    )
    assert torch.equal(cached, uncached)
    assert max(len(output) for output in all_generated(cached)) > 20


def test_cached_and_uncached_beam_search_agree_past_the_cache_growth(endless_model, limit_batch):
    """Outputs of up to 90 tokens, reordered by beam search at every step."""
    input_ids, attention_mask = limit_batch
    cached, uncached = (
        endless_model.generate(
            input_ids, attention_mask=attention_mask, use_cache=use_cache, max_length_offset=80, **BEAM
        )
        for use_cache in (True, False)
    )
    assert torch.equal(cached, uncached)
    assert cached.shape[1] > 80


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_static_cache_decodes_like_the_default_cache(trained_model, batch, mode):
    input_ids, attention_mask, _ = batch
    default, static = (
        trained_model.generate(input_ids, attention_mask=attention_mask, cache_implementation=cache, **mode)
        for cache in (None, "static")
    )
    assert torch.equal(default, static)


@pytest.fixture
def reordered_caches(monkeypatch) -> list:
    """The caches beam search reorders, as it reorders them."""
    caches = []
    original = DecodingCache.reorder_cache

    def spy(self, beam_idx):
        caches.append(self)
        return original(self, beam_idx)

    monkeypatch.setattr(DecodingCache, "reorder_cache", spy)
    return caches


def test_generate_decodes_with_growing_self_attention_layers(random_model, batch, reordered_caches):
    caches = reordered_caches
    input_ids, attention_mask, _ = batch
    random_model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5, **BEAM)
    assert caches, "beam search did not reorder the cache"
    layers = caches[0].self_attention_cache.layers
    assert len(layers) == 2 and all(isinstance(layer, GrowingCacheLayer) for layer in layers)
    # Sized for the call: <s> and the first 4 of the 5 new tokens are all the decoder ever reads.
    assert [layer._buffers[0].shape[2] for layer in layers] == [5, 5]


def test_beam_search_keeps_one_copy_of_the_encoder_keys_per_sentence(random_model, batch, reordered_caches):
    caches = reordered_caches
    input_ids, attention_mask, _ = batch
    random_model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=5, **BEAM)
    cross, self_attention = caches[0].cross_attention_cache.layers[0], caches[0].self_attention_cache.layers[0]
    assert cross.keys.shape[0] == len(input_ids)  # one row per sentence
    assert self_attention.keys.shape[0] == 4 * len(input_ids)  # one row per beam


def test_beam_search_cross_attentions_match_uncached(models_by_attention, batch):
    """The weights the grouped cross-attention returns, per beam, are those of a plain computation."""
    input_ids, attention_mask, _ = batch
    outputs = {
        use_cache: models_by_attention["eager"].generate(
            input_ids,
            attention_mask=attention_mask,
            use_cache=use_cache,
            output_attentions=True,
            return_dict_in_generate=True,
            max_new_tokens=6,
            **BEAM,
        )
        for use_cache in (True, False)
    }
    assert torch.equal(outputs[True].sequences, outputs[False].sequences)
    # Uncached steps return the weights of every position so far; the cached ones only the newest position's.
    for step, (cached, uncached) in enumerate(
        zip(outputs[True].cross_attentions, outputs[False].cross_attentions, strict=True)
    ):
        for layer_cached, layer_uncached in zip(cached, uncached, strict=True):
            assert layer_cached.shape == (4 * len(input_ids), 2, 1, input_ids.shape[1])
            torch.testing.assert_close(layer_cached, layer_uncached[:, :, step : step + 1])


def test_beam_search_from_a_decoder_prefix_matches_uncached(trained_model, batch):
    """A prefix of several decoder tokens: the first cached step attends from all of them, for every beam."""
    input_ids, attention_mask, _ = batch
    prefix = torch.tensor([[BOS, 5, 6]] * len(input_ids))
    cached, uncached = (
        trained_model.generate(
            input_ids, attention_mask=attention_mask, decoder_input_ids=prefix, use_cache=use_cache, **BEAM
        )
        for use_cache in (True, False)
    )
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :3], prefix)


def test_one_row_per_group_only_drops_copies():
    rows = torch.randn(2, 3, 4)
    repeated = rows.repeat_interleave(4, dim=0)
    assert torch.equal(one_row_per_group(repeated, 4), rows)
    different = repeated.clone()
    different[5, 0, 0] += 1.0
    assert one_row_per_group(different, 4) is different
    assert one_row_per_group(rows, 4) is rows  # 2 rows cannot be groups of 4


def test_growing_cache_layer_matches_concatenation():
    layer, reference = GrowingCacheLayer(), DynamicLayer()
    generator = torch.Generator().manual_seed(0)
    for step in range(150):  # past two doublings
        new = torch.randn(3, 2, 4 if step == 0 else 1, 5, generator=generator)
        keys, values = layer.update(new, -new)
        expected_keys, expected_values = reference.update(new, -new)
        assert torch.equal(keys, expected_keys) and torch.equal(values, expected_values)
        assert layer.get_seq_length() == reference.get_seq_length()
        if step % 7 == 3:
            beam_idx = torch.randint(0, 3, (3,), generator=generator)
            layer.reorder_cache(beam_idx)
            reference.reorder_cache(beam_idx)
    assert layer._buffers[0].shape[2] >= layer.get_seq_length() > 2 * GrowingCacheLayer.initial_capacity


def test_growing_cache_layer_adopts_tensors_replaced_from_outside():
    layer = GrowingCacheLayer()
    first = torch.randn(4, 2, 3, 5)
    layer.update(first, first)
    layer.batch_select_indices(torch.tensor([0, 2]))  # as contrastive search does: replaces `keys` and `values`
    new = torch.randn(2, 2, 1, 5)
    keys, _ = layer.update(new, new)
    assert torch.equal(keys, torch.cat([first[[0, 2]], new], dim=2))


# ---------------------------------------------------------------------------------------------------------------------
# 2. The paper's decoding is the saved default
# ---------------------------------------------------------------------------------------------------------------------
EXPECTED_DEFAULTS = dict(
    num_beams=4,
    length_penalty=0.6,
    length_penalty_type="gnmt",
    max_length_offset=50,
    early_stopping=True,
    decoder_start_token_id=BOS,
    eos_token_id=EOS,
    pad_token_id=PAD,
)


def check_defaults(values):
    for name, expected in EXPECTED_DEFAULTS.items():
        value = values[name] if isinstance(values, dict) else getattr(values, name, None)
        assert value == expected, f"{name}: {value!r} != {expected!r}"


def test_paper_decoding_constants():
    assert PAPER_DECODING == dict(
        num_beams=4, length_penalty=0.6, length_penalty_type="gnmt", max_length_offset=50, early_stopping=True
    )


def test_generation_config_defaults_survive_save_and_load(trained_model, batch, tmp_path):
    check_defaults(trained_model.generation_config)
    trained_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    check_defaults(saved)
    check_defaults(GenerationConfig.from_pretrained(tmp_path))

    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert isinstance(loaded, VaswaniForConditionalGeneration)
    check_defaults(loaded.generation_config)

    # The loaded model decodes as the original does, GNMT scores included.
    input_ids, attention_mask, _ = batch
    kwargs = dict(attention_mask=attention_mask, return_dict_in_generate=True, output_scores=True)
    original = trained_model.generate(input_ids, **kwargs)
    again = loaded.eval().generate(input_ids, **kwargs)
    assert torch.equal(original.sequences, again.sequences)
    torch.testing.assert_close(original.sequences_scores, again.sequences_scores)


# ---------------------------------------------------------------------------------------------------------------------
# 3. Beam scores are the GNMT-normalised log-probabilities
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [1, 2, 3, 7, 20, 59])
def test_gnmt_length_penalty_is_the_gnmt_formula(length):
    penalty = GNMTLengthPenalty(ALPHA)
    assert length**penalty == pytest.approx(((5 + length) / 6) ** ALPHA, rel=1e-12)
    if length == 1:
        assert length**penalty == 1.0
    else:
        assert length**penalty != pytest.approx(length**ALPHA)


def test_gnmt_length_penalty_compares_as_its_alpha():
    """Beam search compares the penalty with 0 (`length_penalty > 0.0`) to decide whether longer beams may win."""
    assert GNMTLengthPenalty(0.6) > 0.0
    assert not GNMTLengthPenalty(0.6) < 0.0
    assert GNMTLengthPenalty(-0.5) < 0.0
    assert not GNMTLengthPenalty(0.0) > 0.0


def teacher_forced_log_probs(model, input_ids, attention_mask, sequences) -> tuple[torch.Tensor, list[int]]:
    """Sum of log-softmax probabilities of each returned sequence's generated tokens (up to and including its first
    </s>), from one uncached forward pass, and the counts |Y| of those tokens."""
    repeats = sequences.shape[0] // input_ids.shape[0]
    with torch.no_grad():
        logits = model(
            input_ids=input_ids.repeat_interleave(repeats, 0),
            attention_mask=attention_mask.repeat_interleave(repeats, 0),
            decoder_input_ids=sequences[:, :-1],
            use_cache=False,
        ).logits
    token_log_probs = logits.log_softmax(-1).gather(-1, sequences[:, 1:, None]).squeeze(-1)  # (B * repeats, T)
    lengths = [len(tokens) for tokens in all_generated(sequences)]
    counted = torch.arange(token_log_probs.shape[1])[None, :] < torch.tensor(lengths)[:, None]
    return (token_log_probs * counted).sum(-1), lengths


def beam_scores(model, input_ids, attention_mask, **kwargs):
    output = model.generate(
        input_ids,
        attention_mask=attention_mask,
        num_beams=4,
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs,
    )
    log_probs, lengths = teacher_forced_log_probs(model, input_ids, attention_mask, output.sequences)
    return output.sequences, output.sequences_scores, log_probs, torch.tensor(lengths, dtype=torch.float64)


def gnmt(lengths):
    return ((5.0 + lengths) / 6.0) ** ALPHA


@pytest.mark.parametrize("model_name", ["trained_model", "random_model"])
def test_beam_scores_use_the_gnmt_length_penalty(request, batch, model_name):
    model = request.getfixturevalue(model_name)
    input_ids, attention_mask, _ = batch
    # All four hypotheses of every sentence, not only the best, so that the scores cover many lengths.
    sequences, scores, log_probs, lengths = beam_scores(model, input_ids, attention_mask, num_return_sequences=4)
    assert all(tokens[-1] == EOS for tokens in all_generated(sequences))
    assert len(set(lengths.tolist())) >= 3
    expected = (log_probs.double() / gnmt(lengths)).float()
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    # ... and not transformers' own |Y| ** alpha.
    assert (scores - log_probs / lengths.float() ** ALPHA).abs().max() > 1e-3


def test_power_length_penalty_is_transformers_form(trained_model, batch):
    input_ids, attention_mask, _ = batch
    _, gnmt_scores, _, _ = beam_scores(trained_model, input_ids, attention_mask, num_return_sequences=4)
    sequences, scores, log_probs, lengths = beam_scores(
        trained_model, input_ids, attention_mask, num_return_sequences=4, length_penalty_type="power"
    )
    assert all(tokens[-1] == EOS for tokens in all_generated(sequences))
    expected = (log_probs.double() / lengths**ALPHA).float()
    torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
    assert (scores - (log_probs.double() / gnmt(lengths)).float()).abs().max() > 1e-3
    assert not torch.allclose(scores, gnmt_scores, atol=1e-3, rtol=0)
    # The model's own defaults are untouched by the per-call override.
    assert trained_model.generation_config.length_penalty_type == "gnmt"


# ---------------------------------------------------------------------------------------------------------------------
# 4. Maximum output length = input length + 50, per sentence
# ---------------------------------------------------------------------------------------------------------------------
MODES = [GREEDY, BEAM, SAMPLE]
MODE_IDS = ["greedy", "beam", "sample"]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_output_length_is_source_length_plus_50(endless_model, limit_batch, mode):
    input_ids, attention_mask = limit_batch
    torch.manual_seed(0)
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, **mode)
    limits = [n + OFFSET for n in source_lengths(attention_mask)]
    outputs = all_generated(sequences)
    for output, limit in zip(outputs, limits, strict=True):
        assert len(output) <= limit
        # The model never chooses </s>: every output runs to its own limit and ends with the forced </s>.
        assert len(output) == limit and output[-1] == EOS and EOS not in output[:-1]
    assert sequences.shape[1] == 1 + max(limits)


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_length_limit_is_per_sentence(endless_model, limit_batch, mode):
    """A short source's output does not depend on a long source beside it in the batch."""
    input_ids, attention_mask = limit_batch
    batched = all_generated(endless_model.generate(input_ids, attention_mask=attention_mask, **mode))
    for i, n in enumerate(source_lengths(attention_mask)):
        alone = all_generated(endless_model.generate(input_ids[i : i + 1, :n], **mode))
        assert alone == [batched[i]]


def test_trained_outputs_do_not_depend_on_the_batch(trained_model, batch):
    input_ids, attention_mask, _ = batch
    batched = all_generated(trained_model.generate(input_ids, attention_mask=attention_mask))
    for i, n in enumerate(source_lengths(attention_mask)):
        assert all_generated(trained_model.generate(input_ids[i : i + 1, :n])) == [batched[i]]


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("new_tokens", [5, 80])
def test_max_new_tokens_overrides_the_source_limit(endless_model, limit_batch, mode, new_tokens):
    input_ids, attention_mask = limit_batch
    limits = [n + OFFSET for n in source_lengths(attention_mask)]
    assert new_tokens < min(limits) or new_tokens > max(limits), "the override should cut or exceed every limit"
    torch.manual_seed(0)
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens, **mode)
    assert sequences.shape[1] == 1 + new_tokens
    assert [len(output) for output in all_generated(sequences)] == [new_tokens] * len(LIMIT_LENGTHS)
    assert (sequences != EOS).all()


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
@pytest.mark.parametrize("max_length", [8, 70])
def test_max_length_overrides_the_source_limit(endless_model, limit_batch, mode, max_length):
    """`max_length` counts the decoder start token (transformers' convention for encoder-decoder models)."""
    input_ids, attention_mask = limit_batch
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, max_length=max_length, **mode)
    assert sequences.shape[1] == max_length
    assert [len(output) for output in all_generated(sequences)] == [max_length - 1] * len(LIMIT_LENGTHS)


def test_generation_config_max_new_tokens_overrides_the_source_limit(endless_model, limit_batch):
    input_ids, attention_mask = limit_batch
    config = copy.deepcopy(endless_model.generation_config)
    config.max_new_tokens = 7
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, generation_config=config)
    assert [len(output) for output in all_generated(sequences)] == [7] * len(LIMIT_LENGTHS)


@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_max_length_offset_changes_the_limit(endless_model, limit_batch, mode):
    input_ids, attention_mask = limit_batch
    torch.manual_seed(0)
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, max_length_offset=10, **mode)
    outputs = all_generated(sequences)
    assert [len(output) for output in outputs] == [n + 10 for n in source_lengths(attention_mask)]
    assert all(output[-1] == EOS for output in outputs)
    assert endless_model.generation_config.max_length_offset == OFFSET  # a per-call override


def test_max_length_offset_from_a_generation_config(endless_model, limit_batch):
    input_ids, attention_mask = limit_batch
    config = copy.deepcopy(endless_model.generation_config)
    config.max_length_offset = 3
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, generation_config=config)
    assert [len(output) for output in all_generated(sequences)] == [n + 3 for n in source_lengths(attention_mask)]


def test_a_generation_config_without_the_offset_keeps_the_models_limit(endless_model, limit_batch):
    """A GenerationConfig that says nothing about `max_length_offset` (or the length) leaves the model's input + 50,
    as transformers fills every unset field from the model's generation config."""
    input_ids, attention_mask = limit_batch
    for config in (GenerationConfig(num_beams=4), GenerationConfig(num_beams=1, do_sample=False)):
        sequences = endless_model.generate(input_ids, attention_mask=attention_mask, generation_config=config)
        lengths = [len(output) for output in all_generated(sequences)]
        assert lengths == [n + OFFSET for n in source_lengths(attention_mask)], config


@pytest.mark.filterwarnings("ignore:Using the model-agnostic default `max_length`:UserWarning")
@pytest.mark.parametrize("mode", MODES, ids=MODE_IDS)
def test_max_length_offset_none_disables_the_limit(endless_model, limit_batch, mode):
    """Without the source-relative limit, transformers' own length rule applies: the same output as
    `GenerationMixin.generate` (no source limit of ours), one length for every sentence, shorter than any source
    limit here, not ended by </s>."""
    input_ids, attention_mask = limit_batch
    torch.manual_seed(0)
    sequences = endless_model.generate(input_ids, attention_mask=attention_mask, max_length_offset=None, **mode)
    torch.manual_seed(0)
    reference = GenerationMixin.generate(endless_model, input_ids, attention_mask=attention_mask, **mode)
    assert torch.equal(sequences, reference)
    lengths = [len(output) for output in all_generated(sequences)]
    assert lengths == [sequences.shape[1] - 1] * len(LIMIT_LENGTHS)
    assert lengths[0] < min(source_lengths(attention_mask)) + OFFSET
    assert (sequences != EOS).all()


# ---------------------------------------------------------------------------------------------------------------------
# 5. generate() from encoder outputs
# ---------------------------------------------------------------------------------------------------------------------
def encode(model, input_ids, attention_mask):
    # Fresh outputs for every call: generate() expands them in place for beam search.
    with torch.no_grad():
        return model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_generate_from_encoder_outputs(trained_model, batch, mode):
    input_ids, attention_mask, targets = batch
    from_ids = trained_model.generate(input_ids, attention_mask=attention_mask, **mode)
    from_states = trained_model.generate(
        encoder_outputs=encode(trained_model, input_ids, attention_mask), attention_mask=attention_mask, **mode
    )
    assert torch.equal(from_ids, from_states)
    in_training_lengths = [i for i, n in enumerate(BATCH_LENGTHS) if n <= 8]
    assert (
        sum(all_generated(from_states)[i] == targets[i] for i in in_training_lengths) >= len(in_training_lengths) - 1
    )


@pytest.mark.parametrize("mode", [GREEDY, BEAM], ids=["greedy", "beam"])
def test_encoder_outputs_take_source_lengths_from_the_mask(endless_model, limit_batch, mode):
    input_ids, attention_mask = limit_batch
    sequences = endless_model.generate(
        encoder_outputs=encode(endless_model, input_ids, attention_mask), attention_mask=attention_mask, **mode
    )
    assert [len(output) for output in all_generated(sequences)] == [n + OFFSET for n in source_lengths(attention_mask)]


def test_encoder_outputs_without_mask_use_their_full_width(endless_model):
    sources, _ = toy_examples([4, 4], torch.Generator().manual_seed(5))
    input_ids, attention_mask = pad_batch(sources)
    sequences = endless_model.generate(encoder_outputs=encode(endless_model, input_ids, attention_mask), **GREEDY)
    assert [len(output) for output in all_generated(sequences)] == [5 + OFFSET] * 2


def test_length_limit_stops_at_the_last_position(tiny_config):
    # A source near max_position_embeddings: input + 50 would run past the decoder's positions.
    config = tiny_config(max_position_embeddings=32)
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight[config.eos_token_id] = -10.0  # never chooses </s> by itself
    source = torch.randint(4, config.vocab_size, (1, 30))
    out = model.generate(input_ids=source, num_beams=1)
    assert out.shape[1] - 1 == config.max_position_embeddings  # <s> + 32 tokens, the last one forced </s>
    assert out[0, -1].item() == config.eos_token_id
