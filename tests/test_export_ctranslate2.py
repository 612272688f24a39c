"""Tests of `vaswani_hf.export.ctranslate2` and `vaswani-export-ct2`: converted tiny models give our
log-probabilities, our greedy translations token for token, our beam search where CTranslate2's search is the same,
and our output lengths; unusable inputs are refused with messages that say why.

The translation tests use tiny models trained for a few dozen updates on a toy English-German corpus: a randomly
initialised model repeats one token whatever its source, so equal outputs would prove little. Trained this briefly,
the models translate the toy sentences, stumble on the others, and end their outputs at different lengths.
"""

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaswani_hf import VaswaniForConditionalGeneration, VaswaniModel, train_shared_bpe
from vaswani_hf.evaluation import translate
from vaswani_hf.export.ctranslate2 import (
    EXPORT_INFO_FILE,
    CTranslate2Translator,
    ExportError,
    build_transformer_spec,
    compare_greedy,
    convert_to_ctranslate2,
    generate_reference_ids,
)

from toy_task import TEST_SEED, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

NOUNS = {"cat": "Katze", "dog": "Hund", "house": "Haus", "tree": "Baum", "bird": "Vogel"}
ADJECTIVES = {"small": "klein", "big": "gross", "red": "rot", "old": "alt"}
VERBS = {"sleeps": "schläft", "runs": "läuft", "eats": "isst"}
PAIRS = [
    (f"the {adjective} {noun} {verb}", f"{noun_de} {verb_de} {adjective_de}")
    for (noun, noun_de), (adjective, adjective_de), (verb, verb_de) in itertools.product(
        NOUNS.items(), ADJECTIVES.items(), VERBS.items()
    )
]
# Training sentences, and sentences the models never saw, on which they are unsure: near ties between tokens, which
# the two implementations would break differently if they computed differently.
SOURCES = [source for source, _ in PAIRS[::4]] + [
    "the cat",
    "a big red bird runs and sleeps",
    "house",
    "the the the",
    "bird tree",
    "old old cat eats big dog",
]
MAX_POSITIONS = 48  # below source length + 50: the per-sentence output limit is capped by it
VARIANTS = {
    "post-norm, sinusoidal": dict(norm_first=False, position_embedding_type="sinusoidal"),
    "post-norm, learned": dict(norm_first=False, position_embedding_type="learned"),
    "pre-norm, sinusoidal": dict(norm_first=True, position_embedding_type="sinusoidal"),
    "pre-norm, learned": dict(norm_first=True, position_embedding_type="learned"),
}


@pytest.fixture(scope="module")
def tokenizer():
    return train_shared_bpe([text for pair in PAIRS for text in pair], vocab_size=60, min_frequency=1)


@pytest.fixture(scope="module")
def source_ids(tokenizer) -> list[list[int]]:
    return tokenizer(SOURCES)["input_ids"]


# Training stops at this mean cross-entropy over all PAIRS (checked every 10 updates): the models have learnt the
# pairs (about 40 updates), whatever trajectory the CPU's kernels and `VASWANI_TEST_SEED` give them.
TRAINED_LOSS = 0.6


def train_tiny(tokenizer, steps: int | None = None, **overrides) -> VaswaniForConditionalGeneration:
    """A tiny model trained on the toy pairs with Adam, to `TRAINED_LOSS` (or for exactly `steps` updates); about a
    second on one thread. The updates it took are in `model.tiny_steps`."""
    torch.manual_seed(TEST_SEED)
    config = tiny_config(vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS, **overrides)
    model = VaswaniForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(TEST_SEED)
    everything = tokenizer([s for s, _ in PAIRS], text_target=[t for _, t in PAIRS], padding=True, return_tensors="pt")
    for step in range(1, (steps or 500) + 1):
        batch = [PAIRS[index] for index in torch.randint(len(PAIRS), (16,), generator=generator).tolist()]
        inputs = tokenizer([s for s, _ in batch], text_target=[t for _, t in batch], padding=True, return_tensors="pt")
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if steps is None and step % 10 == 0:
            with torch.no_grad():
                model.eval()
                if model(**everything).loss.item() <= TRAINED_LOSS:
                    break
                model.train()
    else:
        if steps is None:
            raise AssertionError(f"the tiny model did not reach a loss of {TRAINED_LOSS} in 500 updates")
    model.tiny_steps = step
    return model.eval()


@pytest.fixture(scope="module")
def converted(tokenizer, tmp_path_factory):
    """Factory: `converted(variant)` gives a trained tiny model of that variant and its converted translator, each
    built once per module."""
    cache = {}

    def get(variant: str) -> tuple[VaswaniForConditionalGeneration, CTranslate2Translator]:
        if variant not in cache:
            model = train_tiny(tokenizer, **VARIANTS[variant])
            output_dir = tmp_path_factory.mktemp("ct2") / "model"
            convert_to_ctranslate2(model, output_dir, tokenizer=tokenizer)
            cache[variant] = model, CTranslate2Translator(output_dir, intra_threads=1)
        return cache[variant]

    return get


def ours_with_end(model, input_ids, **generate_kwargs) -> list[list[int]]:
    """`generate()` without <s> and the padding after </s>, the final </s> kept where it was produced."""
    outputs = []
    for ids in input_ids:
        row = model.generate(torch.tensor([ids]), **generate_kwargs)[0].tolist()[1:]
        outputs.append(row[: row.index(model.config.eos_token_id) + 1] if model.config.eos_token_id in row else row)
    return outputs


# ------------------------------------------------------------------------------------------- numbers and greedy search


@pytest.mark.parametrize("tie_word_embeddings", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_log_probabilities_are_ours(variant, tie_word_embeddings, tiny_config, tokenizer, source_ids, tmp_path):
    """CTranslate2's `score_batch` gives the log-probability of each target token, </s> included, after <s>: the
    same numbers as our forward pass, with random weights, untied output projections too, and a LayerNorm epsilon
    large enough to matter (CTranslate2 takes it from config.json; left out, these log-probabilities differ)."""
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tokenizer),
        layer_norm_eps=0.5,
        tie_word_embeddings=tie_word_embeddings,
        **VARIANTS[variant],
    )
    model = VaswaniForConditionalGeneration(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            # Twice the initial scale, so that every weight moves the log-probabilities well above rounding.
            parameter.mul_(2)
    translator = CTranslate2Translator(convert_to_ctranslate2(model, tmp_path / "ct2", tokenizer=tokenizer))
    targets = tokenizer([target for _, target in PAIRS[:6]])["input_ids"]

    results = translator.translator.score_batch(
        [tokenizer.convert_ids_to_tokens(ids) for ids in source_ids[:6]],
        [tokenizer.convert_ids_to_tokens(ids[:-1]) for ids in targets],  # CTranslate2 adds </s> itself
    )
    for ids, target, result in zip(source_ids[:6], targets, results, strict=True):
        assert result.tokens == tokenizer.convert_ids_to_tokens(target)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), labels=torch.tensor([target])).logits[0]
        ours = logits.log_softmax(-1)[torch.arange(len(target)), torch.tensor(target)].numpy()
        np.testing.assert_allclose(result.log_probs, ours, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_translations_are_ours(variant, converted, source_ids):
    """Token for token, with the paper's per-sentence limit (source length + 50, capped at the positions)."""
    model, translator = converted(variant)
    ours = generate_reference_ids(model, source_ids, num_beams=1)
    assert translator.generate_ids(source_ids) == ours

    # Not degenerate: outputs differ between sources, few run on repeating a single token (a tiny model may, on a
    # sentence unlike its training pairs), and most end on their own.
    assert len({tuple(output) for output in ours}) >= len(SOURCES) // 2
    assert sum(len(output) >= 4 and len(set(output)) == 1 for output in ours) <= len(SOURCES) // 4
    limits = [min(len(ids) + 50, MAX_POSITIONS) for ids in source_ids]
    assert sum(len(output) < limit - 1 for output, limit in zip(ours, limits, strict=True)) >= len(SOURCES) // 2


def test_translate_texts_as_evaluation_translate(converted, tokenizer):
    model, translator = converted("pre-norm, sinusoidal")
    texts = [SOURCES[0], "", "  ", SOURCES[-1], SOURCES[3]]
    assert translator.translate(texts) == translate(model, tokenizer, texts, num_beams=1)
    assert translator.translate(texts)[1:3] == ["", ""]


# ------------------------------------------------------------------------------------------------------ output lengths


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (dict(max_new_tokens=5), dict(max_new_tokens=5)),
        (dict(min_new_tokens=12, max_new_tokens=20), dict(min_new_tokens=12, max_new_tokens=20)),
        (dict(min_new_tokens=9, max_new_tokens=9), dict(fixed_length=9)),
        (dict(max_length_offset=1), dict(max_length_offset=1)),
    ],
    ids=["max_new_tokens", "min_new_tokens", "fixed_length", "max_length_offset"],
)
def test_output_lengths_are_counted_as_ours(ours, theirs, converted, source_ids):
    """The same outputs with the end token kept, so that where each output stops, and why, is compared too."""
    model, translator = converted("post-norm, sinusoidal")
    expected = ours_with_end(model, source_ids, num_beams=1, **ours)
    assert translator.generate_ids(source_ids, include_end_token=True, **theirs) == expected
    eos = model.config.eos_token_id
    if "fixed_length" in theirs:
        assert all(len(output) == theirs["fixed_length"] and eos not in output for output in expected)
    if "max_length_offset" in theirs:
        # generate() forces </s> as the last token; CTranslate2 stops one token earlier and the </s> is added back.
        # Both kinds of end occur here.
        limits = [len(ids) + 1 for ids in source_ids]
        at_limit = [len(output) == limit for output, limit in zip(expected, limits, strict=True)]
        assert any(at_limit) and not all(at_limit)
        assert all(output[-1] == eos for output in expected)


@pytest.mark.parametrize("push", [1.0, -1.0], ids=["ends at once", "never ends"])
def test_translations_that_end_at_once_or_never(push, tiny_config, tokenizer, source_ids, tmp_path):
    """A model pushed towards </s> ends every translation at once: CTranslate2's min_decoding_length defaults to 1,
    ours to 0. One pushed away from </s> runs to the paper's limit, which the positions cap at MAX_POSITIONS: past
    them CTranslate2 has no position encodings."""
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tokenizer), norm_first=True, max_position_embeddings=MAX_POSITIONS)
    model = VaswaniForConditionalGeneration(config).eval()
    eos_embedding = model.lm_head.weight[config.eos_token_id]
    with torch.no_grad():
        # Moves the last hidden state along </s>'s output embedding, so its logit rises or falls by about 10.
        model.model.decoder.final_norm.bias += push * 10 * eos_embedding / eos_embedding.norm() ** 2
    translator = CTranslate2Translator(convert_to_ctranslate2(model, tmp_path / "ct2", tokenizer=tokenizer))
    ours = ours_with_end(model, source_ids, num_beams=1)
    assert translator.generate_ids(source_ids, include_end_token=True) == ours
    expected_length = 1 if push > 0 else MAX_POSITIONS
    assert all(len(output) == expected_length and output[-1] == config.eos_token_id for output in ours)


def test_fixed_length_refuses_other_limits(converted, source_ids):
    _, translator = converted("post-norm, sinusoidal")
    with pytest.raises(ValueError, match="fixed_length sets both limits"):
        translator.generate_ids(source_ids, fixed_length=5, max_new_tokens=5)


# --------------------------------------------------------------------------------------------------------- beam search


@pytest.mark.parametrize("variant", ["post-norm, sinusoidal", "pre-norm, learned"])
def test_beam_search_is_ours_where_the_searches_agree(variant, converted, source_ids):
    """CTranslate2 divides by length ** length_penalty, which is our "power" penalty (the paper's GNMT penalty has no
    CTranslate2 equivalent). It stops a sentence once its best hypothesis has ended when length_penalty is 0 (our
    early_stopping=False finds the same), and once num_beams hypotheses have ended otherwise (our
    early_stopping=True)."""
    model, translator = converted(variant)
    common = dict(num_beams=4, max_new_tokens=20)
    greedy = generate_reference_ids(model, source_ids, num_beams=1, max_new_tokens=20)
    for length_penalty, early_stopping in ((0.0, False), (0.6, True)):
        ours = generate_reference_ids(
            model,
            source_ids,
            length_penalty=length_penalty,
            length_penalty_type="power",
            early_stopping=early_stopping,
            **common,
        )
        assert translator.generate_ids(source_ids, length_penalty=length_penalty, **common) == ours
        assert ours != greedy  # the beam found something greedy search did not


# ------------------------------------------------------------------------------------------------- the exported folder


def test_exported_folder(converted, tokenizer, tmp_path):
    model, _ = converted("pre-norm, learned")
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    output_dir = Path(convert_to_ctranslate2(model, tmp_path / "ct2", tokenizer=tokenizer, quantization="int8"))
    # ctranslate2 quantizes in place: the model's own weights must not be what it quantizes.
    assert all(torch.equal(tensor, weights[name]) for name, tensor in model.state_dict().items())
    config = json.loads((output_dir / "config.json").read_text())
    assert config["layer_norm_epsilon"] == pytest.approx(model.config.layer_norm_eps)
    assert (config["decoder_start_token"], config["eos_token"], config["unk_token"]) == ("<s>", "</s>", "<unk>")
    assert config["add_source_eos"] is False and config["add_source_bos"] is False
    vocabulary = json.loads((output_dir / "shared_vocabulary.json").read_text())
    assert vocabulary == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    assert json.loads((output_dir / EXPORT_INFO_FILE).read_text()) == {"max_position_embeddings": MAX_POSITIONS}

    # int8 weights: a model.bin far smaller than the float32 one, which still translates.
    float32_dir = Path(convert_to_ctranslate2(model, tmp_path / "ct2-fp32", tokenizer=tokenizer))
    assert (output_dir / "model.bin").stat().st_size < 0.5 * (float32_dir / "model.bin").stat().st_size
    translator = CTranslate2Translator(output_dir, intra_threads=1)
    assert all(translator.translate(SOURCES[:3], max_new_tokens=8))


@pytest.mark.parametrize("tie_word_embeddings", [True, False], ids=["tied", "untied"])
def test_shared_matrix_is_stored_once(tie_word_embeddings, tiny_config, tokenizer):
    """One matrix for source embeddings, target embeddings and the bias-less output projection (§3.4): CTranslate2
    stores it once and the other two name it."""
    model = VaswaniForConditionalGeneration(
        tiny_config(vocab_size=len(tokenizer), tie_word_embeddings=tie_word_embeddings)
    )
    spec = build_transformer_spec(model, tokenizer)
    spec.validate()
    spec.optimize()
    assert spec.decoder.projection.has_bias() is False
    # optimize() keeps the first name in alphabetical order and makes the others aliases: names, not arrays.
    others = [spec.encoder.embeddings[0].weight, spec.decoder.projection.weight]
    if tie_word_embeddings:
        assert others == ["decoder/embeddings/weight"] * 2
    else:
        assert not any(isinstance(weight, str) for weight in others)


def test_model_without_tokenizer_decodes_ids(tiny_config, tmp_path):
    """For speed measurements on models that have no tokenizer: placeholder tokens, decoding from ids only."""
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config(max_position_embeddings=MAX_POSITIONS)).eval()
    translator = CTranslate2Translator(convert_to_ctranslate2(model, tmp_path / "ct2"), intra_threads=1)
    assert translator.tokens[:4] == ["<pad>", "<s>", "</s>", "<id_3>"]
    source_ids = torch.randint(3, 64, (4, 10), generator=torch.Generator().manual_seed(0)).tolist()
    theirs = translator.generate_ids(source_ids, num_beams=4, fixed_length=12)
    ours = ours_with_end(
        model, source_ids, num_beams=4, length_penalty=0.0, min_new_tokens=12, max_new_tokens=12, early_stopping=False
    )
    assert theirs == ours and {len(output) for output in theirs} == {12}
    with pytest.raises(ExportError, match="has no tokenizer, so it cannot read text"):
        translator.translate(["the cat"])


def test_compare_greedy_reports_identical_translations(converted):
    model, translator = converted("post-norm, learned")
    report = compare_greedy(model, translator, SOURCES[:5])
    assert report == {"sentences": 5, "identical": 5, "differences": []}


def test_compare_greedy_locates_a_difference(converted, tokenizer, tmp_path):
    """A converted model that is not ours (ten training updates fewer): the report gives where the translations
    part, with our model's log-probabilities of both tokens there."""
    model, _ = converted("post-norm, learned")
    changed = train_tiny(tokenizer, steps=model.tiny_steps - 10, **VARIANTS["post-norm, learned"])
    translator = CTranslate2Translator(convert_to_ctranslate2(changed, tmp_path / "ct2", tokenizer=tokenizer))
    report = compare_greedy(model, translator, SOURCES)
    assert 0 < report["identical"] < report["sentences"]
    difference = report["differences"][0]
    ours = generate_reference_ids(model, tokenizer([difference["source"]])["input_ids"], num_beams=1)[0]
    assert difference["ours"] == tokenizer.decode(ours, skip_special_tokens=True)
    assert difference["ours_token"] == tokenizer.convert_ids_to_tokens(ours)[difference["position"]]
    assert difference["margin"] > 0  # greedy search took our model's most probable token


# ------------------------------------------------------------------------------------------------------------ refusals


def save_model(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def saved_model(converted, tokenizer, tmp_path_factory) -> Path:
    model, _ = converted("post-norm, sinusoidal")
    return save_model(model, tokenizer, tmp_path_factory.mktemp("saved") / "model")


def test_refuses_what_it_cannot_convert(saved_model, tiny_config, tokenizer, tmp_path):
    output_dir = tmp_path / "out"
    with pytest.raises(ExportError, match="No model folder"):
        convert_to_ctranslate2(tmp_path / "missing", output_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="has no config.json"):
        convert_to_ctranslate2(tmp_path / "empty", output_dir)
    (tmp_path / "marian").mkdir()
    (tmp_path / "marian" / "config.json").write_text('{"model_type": "marian"}')
    with pytest.raises(ExportError, match="holds a 'marian' model, not a 'vaswani' one"):
        convert_to_ctranslate2(tmp_path / "marian", output_dir)
    weightless = tmp_path / "weightless"
    tiny_config().save_pretrained(weightless)
    with pytest.raises(ExportError, match="Cannot load the model"):
        convert_to_ctranslate2(weightless, output_dir)
    untokenized = tmp_path / "untokenized"
    VaswaniForConditionalGeneration(tiny_config(vocab_size=len(tokenizer))).save_pretrained(untokenized)
    with pytest.raises(ExportError, match="No tokenizer in .*--tokenizer DIR"):
        convert_to_ctranslate2(untokenized, output_dir)
    with pytest.raises(
        ExportError, match=f"The tokenizer has {len(tokenizer)} tokens but the model's vocab_size is 64"
    ):
        convert_to_ctranslate2(VaswaniForConditionalGeneration(tiny_config()), output_dir, tokenizer=tokenizer)
    with pytest.raises(ExportError, match="Expected a VaswaniForConditionalGeneration, got VaswaniModel"):
        convert_to_ctranslate2(VaswaniModel(tiny_config(vocab_size=len(tokenizer))), output_dir, tokenizer=tokenizer)
    for folder in (saved_model, saved_model.parent):  # force=True would delete the model
        with pytest.raises(ExportError, match="is or contains the model folder .* which the conversion would delete"):
            convert_to_ctranslate2(saved_model, folder, force=True)
    assert not output_dir.exists()
    assert (saved_model / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------- the script


def run_script(*argv: str):
    importlib.import_module("vaswani_hf.cli.export_ct2").main(list(argv))


def test_script_converts_refuses_an_existing_folder_and_checks(saved_model, tmp_path, capsys):
    output_dir = tmp_path / "ct2"
    run_script(str(saved_model), "--output-dir", str(output_dir))
    assert "Converted" in capsys.readouterr().out
    model_bin = (output_dir / "model.bin").read_bytes()

    with pytest.raises(SystemExit, match="already exists: choose a new one, or pass --force"):
        run_script(str(saved_model), "--output-dir", str(output_dir))
    assert (output_dir / "model.bin").read_bytes() == model_bin

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    report = tmp_path / "report.json"
    run_script(
        str(saved_model),
        "--output-dir",
        str(output_dir),
        "--force",
        "--check-sentences",
        str(sentences),
        "--check-report",
        str(report),
        "--threads",
        "1",
    )
    assert f"{len(SOURCES)} of {len(SOURCES)} identical token for token" in capsys.readouterr().out
    assert json.loads(report.read_text())["identical"] == len(SOURCES)


def test_script_names_a_missing_model_folder(tmp_path):
    with pytest.raises(SystemExit, match="error: No model folder"):
        run_script(str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out"))


def test_script_takes_the_output_folder_as_its_old_positional_argument_with_a_warning(saved_model, tmp_path, capsys):
    """A folder is --output-dir in every command; the second positional argument still works for one release."""
    run_script(str(saved_model), str(tmp_path / "ct2"))
    assert (tmp_path / "ct2" / "model.bin").is_file()
    warning = "warning: the output folder as a second positional argument is deprecated and goes in the next release"
    assert warning in capsys.readouterr().err
    with pytest.raises(SystemExit):  # two output folders
        run_script(str(saved_model), str(tmp_path / "a"), "--output-dir", str(tmp_path / "b"))
    assert "give the output folder once" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # none
        run_script(str(saved_model))
    assert "required: --output-dir" in capsys.readouterr().err
