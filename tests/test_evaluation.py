"""Tests of `vaswani_hf.evaluation`: the sacreBLEU + chrF metric module loaded offline, token-batched translation and
scoring. Translation tests use a tiny randomly initialised model with greedy search and a few output tokens."""

import logging
import socket

import pytest
import sacrebleu
import torch

from vaswani_hf import VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.evaluation import evaluate_model, load_metric, score, translate

PAIRS = [
    ("the house is small", "das Haus ist klein"),
    ("the cat sleeps on the mat", "die Katze schläft auf der Matte"),
    ("a dog runs", "ein Hund läuft"),
    ("the small house is very old and the cat is young", "das kleine Haus ist sehr alt und die Katze ist jung"),
    ("it rains", "es regnet"),
]
SOURCES = [source for source, _ in PAIRS]
GREEDY = dict(num_beams=1, max_new_tokens=6)

HYPOTHESES = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog!", "It rains today."]
REFERENCES = ["The cat sat on a mat.", "The quick brown fox jumped over the lazy dog.", "Today it is raining."]
OTHER_REFERENCES = ["There is a cat on the mat.", "A fast brown fox jumps over a lazy dog!", "It is raining today."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_shared_bpe([text for pair in PAIRS for text in pair], vocab_size=80, min_frequency=1)


@pytest.fixture
def model(tiny_config, tokenizer):
    torch.manual_seed(0)
    # float64: batching changes the shapes of the matrix products, and the comparisons with unbatched generation below
    # must not hinge on float32 rounding turning a near tie of the random model's logits.
    config = tiny_config(vocab_size=len(tokenizer), max_position_embeddings=64)
    return VaswaniForConditionalGeneration(config).to(torch.float64).eval()


def one_by_one(model, tokenizer, sentences, **generate_kwargs):
    """Reference translations: each sentence alone, without padding."""
    outputs = []
    for sentence in sentences:
        output = model.generate(**tokenizer([sentence], return_tensors="pt"), **generate_kwargs)
        outputs.append(tokenizer.decode(output[0], skip_special_tokens=True))
    return outputs


def count_generate_calls(monkeypatch, model) -> list[torch.Size]:
    """Records the `input_ids` shape of every `model.generate` call."""
    shapes = []
    generate = model.generate

    def counting(**kwargs):
        shapes.append(kwargs["input_ids"].shape)
        return generate(**kwargs)

    monkeypatch.setattr(model, "generate", counting)
    return shapes


# ---------------------------------------------------------------------------------------------------- the metric


def test_metric_loads_without_network_and_agrees_with_sacrebleu(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the metric tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    result = load_metric().compute(predictions=HYPOTHESES, references=REFERENCES)

    bleu_metric, chrf_metric = sacrebleu.BLEU(), sacrebleu.CHRF()
    bleu = bleu_metric.corpus_score(HYPOTHESES, [REFERENCES])
    assert result["bleu"] == pytest.approx(bleu.score)
    assert result["chrf"] == pytest.approx(chrf_metric.corpus_score(HYPOTHESES, [REFERENCES]).score)
    assert 0 < result["bleu"] < 100
    assert result["bleu_signature"] == str(bleu_metric.get_signature())
    assert "tok:13a" in result["bleu_signature"]
    assert result["chrf_signature"] == str(chrf_metric.get_signature())
    assert "nc:6|nw:0" in result["chrf_signature"]  # chrF2: character 6-grams, no word n-grams
    assert result["bleu_details"] == {
        "precisions": pytest.approx(bleu.precisions),
        "bp": pytest.approx(bleu.bp),
        "ratio": pytest.approx(bleu.ratio),
        "sys_len": bleu.sys_len,
        "ref_len": bleu.ref_len,
    }


def test_metric_identical_text_scores_100():
    result = score(REFERENCES, REFERENCES)
    assert result["bleu"] == pytest.approx(100)
    assert result["chrf"] == pytest.approx(100)


def test_metric_several_references():
    references = [[first, second] for first, second in zip(REFERENCES, OTHER_REFERENCES, strict=True)]
    result = score(HYPOTHESES, references)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES, OTHER_REFERENCES]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES, OTHER_REFERENCES]).score)
    assert result["bleu_signature"].startswith("nrefs:2|")
    assert result["bleu"] > score(HYPOTHESES, REFERENCES)["bleu"]


def test_metric_options_reach_sacrebleu():
    result = score(["THE CAT SAT ON THE MAT"], ["the cat sat on the mat"], lowercase=True, tokenize="intl")
    assert result["bleu"] == pytest.approx(100)
    assert result["chrf"] == pytest.approx(100)
    assert "case:lc" in result["bleu_signature"] and "tok:intl" in result["bleu_signature"]


def test_metric_rejects_uneven_reference_counts():
    with pytest.raises(ValueError, match="same number of references"):
        score(HYPOTHESES[:2], [[REFERENCES[0]], [REFERENCES[1], OTHER_REFERENCES[1]]])


def test_score_length_mismatch_names_both_counts():
    with pytest.raises(ValueError, match="3 hypotheses but 2 references"):
        score(HYPOTHESES, REFERENCES[:2])


def test_score_bad_input():
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [])
    with pytest.raises(TypeError, match="not a single str"):
        score("a sentence", ["a sentence"])


# ---------------------------------------------------------------------------------------------------- translate


def test_translate_keeps_order_and_equals_unbatched_generation(monkeypatch, model, tokenizer):
    sentences = [SOURCES[i] for i in (2, 3, 0, 4, 1)]  # not sorted by length
    shapes = count_generate_calls(monkeypatch, model)
    hypotheses = translate(model, tokenizer, sentences, max_tokens=24, **GREEDY)
    assert len(shapes) > 1 and any(shape[0] > 1 for shape in shapes)  # several batches, some padded
    monkeypatch.undo()
    assert hypotheses == one_by_one(model, tokenizer, sentences, **GREEDY)
    assert len(set(hypotheses)) > 1  # the random model does tell the sentences apart


def test_translate_batches_within_max_tokens(monkeypatch, model, tokenizer):
    lengths = [len(ids) for ids in tokenizer(SOURCES)["input_ids"]]
    max_tokens = 2 * sorted(lengths)[-2]
    shapes = count_generate_calls(monkeypatch, model)
    translate(model, tokenizer, SOURCES, max_tokens=max_tokens, **GREEDY)
    # The longest source exceeds the budget for two and goes alone; the others pair up.
    assert sorted(shape[0] for shape in shapes) == [1, 2, 2]
    assert all(shape[0] * shape[1] <= max_tokens for shape in shapes if shape[0] > 1)
    assert sum(shape[0] for shape in shapes) == len(SOURCES)

    shapes.clear()
    translate(model, tokenizer, SOURCES, max_tokens=10_000, **GREEDY)
    assert [shape[0] for shape in shapes] == [len(SOURCES)]


def test_translate_empty_sentences_skip_the_model(monkeypatch, model, tokenizer):
    shapes = count_generate_calls(monkeypatch, model)
    hypotheses = translate(model, tokenizer, ["", SOURCES[0], "   ", SOURCES[2], ""], **GREEDY)
    assert hypotheses[0] == hypotheses[2] == hypotheses[4] == ""
    assert hypotheses[1] and hypotheses[3]
    assert sum(shape[0] for shape in shapes) == 2

    shapes.clear()
    assert translate(model, tokenizer, ["", ""], **GREEDY) == ["", ""]
    assert translate(model, tokenizer, [], **GREEDY) == []
    assert shapes == []


def test_translate_truncates_long_sources_with_a_warning(caplog, tiny_config, tokenizer):
    model = VaswaniForConditionalGeneration(tiny_config(vocab_size=len(tokenizer), max_position_embeddings=8))
    long_source = " ".join(SOURCES)
    with caplog.at_level(logging.WARNING, logger="vaswani_hf.evaluation"):
        hypotheses = translate(model, tokenizer, [long_source, SOURCES[4]], num_beams=1, max_new_tokens=4)
    assert len(hypotheses) == 2
    assert "1 of 2 sources are longer than the model's max_position_embeddings=8" in caplog.text


def test_translate_runs_in_eval_mode_and_restores_training_mode(tiny_config, tokenizer):
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config(vocab_size=len(tokenizer), dropout=0.5)).to(torch.float64)
    expected = translate(model.eval(), tokenizer, SOURCES, **GREEDY)
    model.train()
    assert translate(model, tokenizer, SOURCES, **GREEDY) == expected  # no dropout while translating
    assert model.training


def test_translate_bad_input(model, tokenizer):
    with pytest.raises(TypeError, match="not a single str"):
        translate(model, tokenizer, SOURCES[0])
    with pytest.raises(TypeError, match="item 1 is a int"):
        translate(model, tokenizer, [SOURCES[0], 3])
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        translate(model, tokenizer, SOURCES, max_tokens=0)
    with pytest.raises(ValueError, match="num_return_sequences"):
        translate(model, tokenizer, SOURCES, num_return_sequences=2)


def test_evaluate_model(model, tokenizer):
    references = [target for _, target in PAIRS]
    scores, hypotheses = evaluate_model(model, tokenizer, SOURCES, references, max_tokens=32, **GREEDY)
    assert hypotheses == translate(model, tokenizer, SOURCES, **GREEDY)
    assert scores == score(hypotheses, references)
    with pytest.raises(ValueError, match="5 sources but 4 references"):
        evaluate_model(model, tokenizer, SOURCES, references[:4])
