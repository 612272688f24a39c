"""Tests of `vaswani_hf.evaluation`: the sacreBLEU + chrF metric module loaded offline, token-batched translation
(whole, as a stream of windows, and into a file that an interrupted run continues) and scoring. Translation tests use
a tiny randomly initialised model with greedy search and a few output tokens."""

import copy
import json
import logging
import socket

import pytest
import sacrebleu
import torch

from vaswani_hf import VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.evaluation import (
    decoding_lengths,
    evaluate_model,
    load_metric,
    score,
    sentences_fingerprint,
    translate,
    translate_file,
    translate_stream,
    weights_fingerprint,
)

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


def count_generate_calls(monkeypatch, model, interrupt_at: int | None = None) -> list[torch.Size]:
    """Records the `input_ids` shape of every `model.generate` call; raises KeyboardInterrupt (Ctrl-C) at call
    `interrupt_at` instead."""
    shapes = []
    generate = model.generate

    def counting(**kwargs):
        if len(shapes) + 1 == interrupt_at:
            raise KeyboardInterrupt
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


def test_translate_counts_each_sentence_at_its_output_limit(monkeypatch, model, tokenizer):
    """Decoding keeps up to the output limit's positions for every beam, so that is what a batch counts: with the
    paper's limit, source length + 50 per sentence, which makes short sentences cost nearly as much as long ones."""
    ids = tokenizer(SOURCES)["input_ids"]
    lengths = [len(sequence) for sequence in ids]
    assert decoding_lengths(model.generation_config, ids, {}) == [n + 50 for n in lengths]
    assert decoding_lengths(model.generation_config, ids, {"max_length_offset": 5}) == [n + 5 for n in lengths]
    assert decoding_lengths(model.generation_config, ids, {"max_new_tokens": 9}) == [max(n, 9) for n in lengths]
    assert decoding_lengths(model.generation_config, ids, {"max_length": 30}) == [max(n, 30) for n in lengths]
    # No limit of either kind: the generation config's max_length where it has one, else the source alone.
    switched_off = decoding_lengths(model.generation_config, ids, {"max_length_offset": None})
    assert switched_off == [max(n, model.generation_config.max_length or 0) for n in lengths]

    budget = 2 * (max(lengths) + 50)  # by the source alone, all five sentences would fit
    shapes = count_generate_calls(monkeypatch, model)
    translate(model, tokenizer, SOURCES, max_tokens=budget, num_beams=1)
    assert sorted(shape[0] for shape in shapes) == [1, 2, 2]
    assert all(shape[0] * (shape[1] + 50) <= budget for shape in shapes)


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


# ---------------------------------------------------------------------------------------------------- translate_stream

# Three windows of 4 and one of 2 at window=4, blank lines among them and no window sorted by length.
STREAM = [
    SOURCES[3],
    "",
    SOURCES[0],
    SOURCES[2],
    SOURCES[1],
    SOURCES[4],
    "  ",
    SOURCES[3],
    SOURCES[2],
    "",
    *SOURCES[:4],
]


def test_translate_stream_gives_the_whole_path_s_hypotheses_window_by_window(monkeypatch, model, tokenizer):
    shapes = count_generate_calls(monkeypatch, model)
    windows = list(translate_stream(model, tokenizer, STREAM, window=4, max_tokens=1000, **GREEDY))
    assert [len(window) for window in windows] == [4, 4, 4, 2]
    # One batch per window (the budget holds a whole window): each sentence decoded once, with its window's others,
    # blank lines not at all.
    assert [shape[0] for shape in shapes] == [3, 3, 3, 2]
    monkeypatch.undo()
    flat = [hypothesis for window in windows for hypothesis in window]
    assert flat == translate(model, tokenizer, STREAM, max_tokens=1000, **GREEDY)
    assert [hypothesis for sentence, hypothesis in zip(STREAM, flat, strict=True) if not sentence.strip()] == [""] * 3
    assert all(hypothesis for sentence, hypothesis in zip(STREAM, flat, strict=True) if sentence.strip())


def test_translate_stream_reads_a_window_only_when_the_previous_one_is_taken(model, tokenizer):
    read = []

    def lines():
        for index, sentence in enumerate(SOURCES * 4):
            if index == 6:
                raise RuntimeError("read past the second window")
            read.append(sentence)
            yield sentence

    windows = translate_stream(model, tokenizer, lines(), window=3, **GREEDY)
    assert read == []  # nothing read before the first window is asked for
    assert next(windows) == translate(model, tokenizer, SOURCES[:3], **GREEDY)
    assert len(read) == 3  # the first window's hypotheses come before the rest is read
    assert len(next(windows)) == 3 and len(read) == 6
    with pytest.raises(RuntimeError, match="read past the second window"):
        next(windows)


def test_translate_stream_refuses_bad_input_when_called(model, tokenizer):
    with pytest.raises(TypeError, match="not a single str"):
        translate_stream(model, tokenizer, SOURCES[0])
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        translate_stream(model, tokenizer, SOURCES, window=0)
    with pytest.raises(ValueError, match="max_new_tokens=65 is more than this model can decode"):
        translate_stream(model, tokenizer, SOURCES, max_new_tokens=65)
    windows = translate_stream(model, tokenizer, [*SOURCES, SOURCES[0], 7], window=4, **GREEDY)
    assert len(next(windows)) == 4
    with pytest.raises(TypeError, match="item 6 is a int"):  # its index in the input, not in its window
        next(windows)


# ---------------------------------------------------------------------------------------------------- translate_file


def decoded(shapes: list[torch.Size]) -> int:
    """How many sentences the recorded `generate` calls decoded."""
    return sum(shape[0] for shape in shapes)


def nonblank(sentences: list[str]) -> int:
    return sum(bool(sentence.strip()) for sentence in sentences)


def test_translate_file_continues_an_interrupted_run_without_translating_its_lines_again(
    monkeypatch, model, tokenizer, tmp_path
):
    source = sentences_fingerprint(STREAM)
    options = dict(source=source, window=4, max_tokens=1000, **GREEDY)
    reference = tmp_path / "reference.txt"
    assert translate_file(model, tokenizer, STREAM, reference, **options) == 0
    assert sorted(child.name for child in tmp_path.iterdir()) == ["reference.txt"]  # no partial file, no record
    expected = translate(model, tokenizer, STREAM, **GREEDY)
    assert reference.read_text(encoding="utf-8") == "".join(line + "\n" for line in expected)

    output = tmp_path / "out.txt"
    count_generate_calls(monkeypatch, model, interrupt_at=3)  # one call per window: Ctrl-C in the third
    with pytest.raises(KeyboardInterrupt):
        translate_file(model, tokenizer, STREAM, output, **options)
    monkeypatch.undo()
    partial, record_path = tmp_path / "out.txt.partial", tmp_path / "out.txt.partial.json"
    record = json.loads(record_path.read_text())
    assert not output.exists() and record["lines"] == 8
    assert partial.read_bytes() == reference.read_bytes()[: record["bytes"]]
    # A kill in the middle of the next write leaves a torn line after what the record counts.
    with partial.open("ab") as file:
        file.write("halb über".encode()[:6])  # and in the middle of a character

    shapes = count_generate_calls(monkeypatch, model)
    assert translate_file(model, tokenizer, STREAM, output, **options) == 8
    assert decoded(shapes) == nonblank(STREAM[8:])  # not the first 8 lines again
    assert output.read_bytes() == reference.read_bytes()
    assert not partial.exists() and not record_path.exists()


def test_translate_file_refuses_to_continue_another_run_and_restarts_when_asked(
    monkeypatch, model, tokenizer, tmp_path, caplog
):
    output = tmp_path / "out.txt"
    options = dict(window=4, max_tokens=1000)
    count_generate_calls(monkeypatch, model, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        translate_file(model, tokenizer, STREAM, output, source=sentences_fingerprint(STREAM), **options, **GREEDY)
    monkeypatch.undo()
    partial = (tmp_path / "out.txt.partial").read_bytes()

    other_input = [*STREAM, "one more line"]
    with pytest.raises(ValueError, match=r"first 4 lines of an interrupted run that differs from this one in input "
                                         r"\(lines 14 then, 15 now, sha256 .* then, .* now\): .*--restart"):  # fmt: skip
        translate_file(model, tokenizer, other_input, output, source=sentences_fingerprint(other_input), **options,
                       **GREEDY)  # fmt: skip
    with pytest.raises(ValueError, match=r"differs from this one in decoding \(max_new_tokens 6 then, 5 now\)"):
        translate_file(model, tokenizer, STREAM, output, source=sentences_fingerprint(STREAM), **options,
                       num_beams=1, max_new_tokens=5)  # fmt: skip
    with pytest.raises(ValueError, match=r"differs from this one in model \(dtype float64 then, float32 now, sha256"):
        translate_file(copy.deepcopy(model).float(), tokenizer, STREAM, output, source=sentences_fingerprint(STREAM), **options,
                       **GREEDY)  # fmt: skip
    with pytest.raises(ValueError, match="this run's input cannot be read again"):
        translate_file(model, tokenizer, STREAM, output, source=None, **options, **GREEDY)
    assert (tmp_path / "out.txt.partial").read_bytes() == partial  # refused runs change nothing

    # Another batch size continues it: batching does not change a translation.
    with caplog.at_level(logging.WARNING, logger="vaswani_hf.evaluation"):
        kept = translate_file(model, tokenizer, STREAM, output, source=sentences_fingerprint(STREAM), window=3,
                              max_tokens=40, **GREEDY)  # fmt: skip
    assert kept == 4 and "holds the first 4 lines of an interrupted run" in caplog.text
    assert output.read_text(encoding="utf-8").splitlines() == translate(model, tokenizer, STREAM, **GREEDY)

    count_generate_calls(monkeypatch, model, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        translate_file(model, tokenizer, other_input, output, source=sentences_fingerprint(other_input), **options,
                       **GREEDY)  # fmt: skip
    monkeypatch.undo()
    shapes = count_generate_calls(monkeypatch, model)
    assert translate_file(model, tokenizer, STREAM, output, source=sentences_fingerprint(STREAM), restart=True,
                          **options, **GREEDY) == 0  # fmt: skip
    assert decoded(shapes) == nonblank(STREAM)
    assert output.read_text(encoding="utf-8").splitlines() == translate(model, tokenizer, STREAM, **GREEDY)


def test_translate_file_of_an_input_that_cannot_be_read_again_starts_afresh(monkeypatch, model, tokenizer, tmp_path):
    output = tmp_path / "out.txt"
    count_generate_calls(monkeypatch, model, interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        translate_file(model, tokenizer, iter(STREAM), output, source=None, window=4, **GREEDY)
    monkeypatch.undo()
    shapes = count_generate_calls(monkeypatch, model)
    assert translate_file(model, tokenizer, iter(STREAM), output, source=None, window=4, **GREEDY) == 0
    assert decoded(shapes) == nonblank(STREAM)
    monkeypatch.undo()
    assert output.read_text(encoding="utf-8").splitlines() == translate(model, tokenizer, STREAM, **GREEDY)


def test_translate_file_refuses_bad_options_before_writing_anything(model, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        translate_file(model, tokenizer, STREAM, tmp_path / "out.txt", source=None, max_tokens=0)
    assert list(tmp_path.iterdir()) == []


def test_fingerprints_tell_inputs_and_weights_apart(model):
    assert sentences_fingerprint(iter(SOURCES)) == sentences_fingerprint(list(SOURCES))
    assert sentences_fingerprint(SOURCES)["lines"] == len(SOURCES)
    assert sentences_fingerprint(SOURCES) != sentences_fingerprint(SOURCES[:-1] + [SOURCES[-1] + "."])
    weights = weights_fingerprint(model)
    assert weights["dtype"] == "float64" and weights == weights_fingerprint(model)
    with torch.no_grad():
        model.get_input_embeddings().weight[0, 0] += 1
    assert weights_fingerprint(model)["sha256"] != weights["sha256"]


def test_evaluate_model(model, tokenizer):
    references = [target for _, target in PAIRS]
    scores, hypotheses = evaluate_model(model, tokenizer, SOURCES, references, max_tokens=32, **GREEDY)
    assert hypotheses == translate(model, tokenizer, SOURCES, **GREEDY)
    assert scores == score(hypotheses, references)
    with pytest.raises(ValueError, match="5 sources but 4 references"):
        evaluate_model(model, tokenizer, SOURCES, references[:4])
