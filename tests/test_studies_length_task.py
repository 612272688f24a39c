"""Tests of `vaswani_hf.studies.length_task`: the generated strings, the task's model configs, scoring by length on
known outputs, greedy decoding whatever the generation config says, the training loop's stopping rules, a tiny run of
the whole comparison, and a tiny GRU with attention learning to copy. Float results differ between CPUs, so training
is checked against a criterion, never against exact numbers."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import tiny_rnn_config
from transformers import AutoModelForSeq2SeqLM

from vaswani_hf import RNNConfig, RNNForConditionalGeneration, VaswaniConfig, VaswaniForConditionalGeneration
from vaswani_hf.studies.length_task import (
    BOS,
    EOS,
    EXTRA_OUTPUT_TOKENS,
    FIRST_SYMBOL,
    PAD,
    LengthTask,
    LengthTaskSettings,
    evaluate_on_task,
    greedy_decoding,
    make_task,
    plot_length_task,
    run_length_task,
    task_config,
    train_on_task,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(symbols=6, min_length=2, max_train_length=5, max_test_length=8, train_examples=300, test_per_length=7)


def settings(**overrides) -> LengthTaskSettings:
    """Small settings that train for 10 updates."""
    return LengthTaskSettings(**{**SMALL, "minutes": None, "max_updates": 10, "warmup_steps": 5, **overrides})


def tiny_transformer(**overrides) -> VaswaniConfig:
    return VaswaniConfig(
        **{
            **dict(d_model=16, d_ff=32, num_heads=2, encoder_layers=1, decoder_layers=1, dropout=0.0),
            **dict(max_position_embeddings=8),
            **overrides,
        }
    )


def tiny_gru(attention: str = "additive", **overrides) -> RNNConfig:
    return RNNConfig(**{**dict(hidden_size=16, embedding_size=8, dropout=0.0, attention=attention), **overrides})


# ---------------------------------------------------------------------------------------------------------------------
# The strings
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["reverse", "copy"])
def test_make_task_gives_the_lengths_symbols_and_targets_asked_for(kind):
    task = make_task(settings(task=kind))

    assert task.vocab_size == FIRST_SYMBOL + 6 and (PAD, BOS, EOS) == (0, 1, 2)
    assert len(task.train_sources) == len(task.train_targets) == 300
    train_lengths = {len(source) - 1 for source in task.train_sources}
    # Uniform over 2..5: with 300 draws every length occurs, and none outside.
    assert train_lengths == set(range(2, 6))
    # Every test length, the unseen 6..8 included, test_per_length times.
    assert sorted(task.test_sources) == sorted(task.test_targets) == list(range(2, 9))
    assert all(len(task.test_sources[n]) == len(task.test_targets[n]) == 7 for n in task.test_sources)
    pairs = list(zip(task.train_sources, task.train_targets, strict=True)) + [
        pair for n in task.test_sources for pair in zip(task.test_sources[n], task.test_targets[n], strict=True)
    ]
    for source, target in pairs:
        symbols = source[:-1]
        assert source[-1] == target[-1] == EOS
        assert all(FIRST_SYMBOL <= s < FIRST_SYMBOL + 6 for s in symbols)
        assert target[:-1] == (symbols[::-1] if kind == "reverse" else symbols)
    assert all(len(source) == n + 1 for n, sources in task.test_sources.items() for source in sources)


def test_make_task_is_deterministic_and_keeps_test_and_training_strings_apart():
    task = make_task(settings())
    again = make_task(settings())
    other_seed = make_task(settings(seed=1))
    more_training = make_task(settings(train_examples=500))

    assert (task.train_sources, task.test_sources) == (again.train_sources, again.test_sources)
    assert task.train_sources != other_seed.train_sources and task.test_sources != other_seed.test_sources
    # The test strings come from a stream of their own: more training strings leave them as they were.
    assert more_training.test_sources == task.test_sources
    # Copy and reverse share their sources.
    assert make_task(settings(task="copy")).train_sources == task.train_sources


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(max_test_length=4), "max_test_length"),
        (dict(minutes=None, max_updates=None), "minutes.*max_updates"),
        (dict(min_length=6), "min_length"),
        (dict(symbols=0), "symbols"),
        (dict(task="sort"), "task"),
        (dict(max_updates=0), "max_updates"),
        (dict(minutes=-1.0), "minutes"),
        (dict(learning_rate=0.0), "learning_rate"),
    ],
)
def test_invalid_settings_are_refused_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


def test_settings_changed_after_they_were_made_are_checked_again():
    changed = settings()
    changed.minutes = changed.max_updates = None
    model = RNNForConditionalGeneration(task_config(tiny_gru(), settings()))

    with pytest.raises(ValueError, match="minutes"):
        make_task(changed)
    with pytest.raises(ValueError, match="minutes"):
        train_on_task(model, make_task(settings()), changed, clip_norm=None)


# ---------------------------------------------------------------------------------------------------------------------
# The models' configs
# ---------------------------------------------------------------------------------------------------------------------
def test_task_config_sets_the_vocabulary_and_keeps_the_architecture():
    task_settings = settings(max_test_length=30)
    changed = {"vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"}
    for config in (tiny_transformer(), tiny_gru("none", bidirectional=False, encoder_layers=2), tiny_rnn_config()):
        before = config.to_dict()
        resized = task_config(config, task_settings)
        after = resized.to_dict()

        assert type(resized) is type(config) and config.to_dict() == before  # a copy
        assert (resized.vocab_size, resized.pad_token_id, resized.bos_token_id) == (FIRST_SYMBOL + 6, PAD, BOS)
        assert (resized.eos_token_id, resized.decoder_start_token_id) == (EOS, BOS)
        kept = {k for k in before if k not in changed | {"max_position_embeddings", "transformers_version"}}
        assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    # The Transformer's 8 positions grow to hold the longest test source and its output; more are kept.
    resized = task_config(tiny_transformer(), task_settings)
    assert resized.max_position_embeddings >= 30 + EXTRA_OUTPUT_TOKENS + 1
    assert task_config(tiny_transformer(max_position_embeddings=512), task_settings).max_position_embeddings == 512
    assert not hasattr(task_config(tiny_gru(), task_settings), "max_position_embeddings")
    assert isinstance(AutoModelForSeq2SeqLM.from_config(resized), VaswaniForConditionalGeneration)


# ---------------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------------
# Reverse task; test strings by length, and what a fake model writes for each (after the decoder start token).
KNOWN_SOURCES = {1: [[3, EOS]], 2: [[3, 4, EOS], [5, 6, EOS]], 3: [[3, 4, 5, EOS], [6, 7, 3, EOS]]}
KNOWN_OUTPUTS = {
    (3, EOS): [3, EOS],  # exact
    (3, 4, EOS): [4, 3, EOS],  # exact
    (5, 6, EOS): [6, 5, 5, EOS],  # one symbol too many: 2 right of max(3, 2)
    (3, 4, 5, EOS): [5, 4, EOS],  # one missing: 2 right of 3
    (6, 7, 3, EOS): [3, 7, 6, 7, 3, 6, 7, 3],  # no EOS, all 3 + 5 tokens kept: 3 right of 8
}
KNOWN_SCORES = [  # length, sequence accuracy, token accuracy
    (1, 1.0, 1.0),
    (2, 0.5, (1 + 2 / 3) / 2),
    (3, 0.0, (2 / 3 + 3 / 8) / 2),
]


def test_evaluate_on_task_scores_known_outputs_by_length(monkeypatch):
    task_settings = settings(symbols=5, min_length=1, max_train_length=2, max_test_length=3)
    targets = {n: [[*source[-2::-1], EOS] for source in sources] for n, sources in KNOWN_SOURCES.items()}
    task = LengthTask(task_settings, [], [], KNOWN_SOURCES, targets)
    model = RNNForConditionalGeneration(task_config(tiny_gru(), task_settings))
    calls = []

    def fake_generate(input_ids, attention_mask, **kwargs):
        calls.append((input_ids.shape[1] - 1, kwargs))
        assert not model.training
        rows = [[BOS, *KNOWN_OUTPUTS[tuple(row)]] for row in input_ids.tolist()]
        width = max(map(len, rows))
        return torch.tensor([row + [PAD] * (width - len(row)) for row in rows])  # (B, 1 + generated)

    monkeypatch.setattr(model, "generate", fake_generate)
    model.train()
    by_length = evaluate_on_task(model, task, batch_size=1)

    assert [(e["length"], e["sequence_accuracy"]) for e in by_length] == [(n, seq) for n, seq, _ in KNOWN_SCORES]
    assert [e["token_accuracy"] for e in by_length] == pytest.approx([tok for _, _, tok in KNOWN_SCORES])
    assert [e["sequences"] for e in by_length] == [1, 2, 2]
    assert [e["seen_in_training"] for e in by_length] == [True, True, False]
    # One call per string (batch_size=1), each greedy with room for 5 tokens past the target.
    assert [length for length, _ in calls] == [1, 2, 2, 3, 3]
    for length, kwargs in calls:
        assert (kwargs["num_beams"], kwargs["do_sample"]) == (1, False)
        assert kwargs["max_new_tokens"] == length + EXTRA_OUTPUT_TOKENS
    assert model.training  # put back as it was
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_on_task(model, task, batch_size=0)


def argmax_decode(model, source: list[int], steps: int) -> list[int]:
    """Greedy decoding by hand, one full forward per step and no cache: the output after the start token, cut at the
    first EOS."""
    output = [BOS]
    with torch.no_grad():
        for _ in range(steps):
            logits = model(
                input_ids=torch.tensor([source]), decoder_input_ids=torch.tensor([output])
            ).logits  # (1, T, V)
            output.append(int(logits[0, -1].argmax()))
            if output[-1] == EOS:
                break
    return output[1:-1] if output[-1] == EOS else output[1:]


@pytest.mark.parametrize("architecture", ["transformer", "gru"])
def test_greedy_decoding_overrides_the_papers_beam_search(architecture):
    task_settings = settings()
    config = tiny_transformer() if architecture == "transformer" else tiny_gru()
    torch.manual_seed(3)
    model = AutoModelForSeq2SeqLM.from_config(task_config(config, task_settings)).eval()
    # The model starts with the paper's decoding: beam 4, a length penalty, an output limit relative to the source.
    assert model.generation_config.num_beams == 4
    source = make_task(task_settings).test_sources[8][0]

    generated = model.generate(input_ids=torch.tensor([source]), **greedy_decoding(8))[0, 1:].tolist()  # (1 + T,)
    cut = generated[: generated.index(EOS)] if EOS in generated else generated

    assert cut == argmax_decode(model, source, 8 + EXTRA_OUTPUT_TOKENS)
    assert len(generated) <= 8 + EXTRA_OUTPUT_TOKENS


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------
def test_train_on_task_stops_at_max_updates_or_minutes():
    task_settings = settings(batch_size=16)
    task = make_task(task_settings)
    torch.manual_seed(0)
    model = RNNForConditionalGeneration(task_config(tiny_gru(), task_settings))
    before = [p.detach().clone() for p in model.parameters()]
    lines = []

    result = train_on_task(model, task, task_settings, clip_norm=1.0, log=lines.append)

    assert set(result) == {"updates", "minutes", "examples_seen", "final_loss"}
    assert (result["updates"], result["examples_seen"]) == (10, 160)
    assert 0 < result["minutes"] < 1 and result["final_loss"] > 0
    assert model.training and any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert lines and "10 updates" in lines[-1]

    # 0.002 minutes (0.12 s) of updates, then it stops at the first update past them.
    timed = train_on_task(model, task, replace(task_settings, minutes=0.002, max_updates=None), clip_norm=None)
    assert timed["updates"] >= 1 and 0.002 <= timed["minutes"] < 0.5
    # Both: the first to be reached.
    both = train_on_task(model, task, replace(task_settings, minutes=5.0, max_updates=3), clip_norm=None)
    assert both["updates"] == 3
    with pytest.raises(ValueError, match="clip_norm"):
        train_on_task(model, task, task_settings, clip_norm=0.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_tiny_gru_with_attention_learns_to_copy(seed):
    # Four symbols, strings of 1 to 3: a GRU with attention gets them right in about 60 to 80 updates (6 seeds on
    # one machine); the cap leaves a wide margin, for other CPUs' rounding.
    task_settings = LengthTaskSettings(
        task="copy", symbols=4, min_length=1, max_train_length=3, max_test_length=3, train_examples=1000,
        test_per_length=20, learning_rate=1e-2, warmup_steps=10, minutes=None, max_updates=20, seed=seed,
    )  # fmt: skip
    task = make_task(task_settings)
    torch.manual_seed(seed)
    model = RNNForConditionalGeneration(task_config(tiny_gru(hidden_size=64, embedding_size=32), task_settings))
    updates, accuracy = 0, 0.0
    while updates < 300:
        updates += train_on_task(model, task, task_settings, clip_norm=1.0)["updates"]
        by_length = evaluate_on_task(model, task)
        accuracy = sum(entry["token_accuracy"] for entry in by_length) / len(by_length)
        if accuracy >= 0.9:
            break
    assert accuracy >= 0.9, f"token accuracy {accuracy:.3f} after {updates} updates"


# ---------------------------------------------------------------------------------------------------------------------
# The whole comparison
# ---------------------------------------------------------------------------------------------------------------------
def test_run_length_task_trains_and_tests_every_model(tmp_path):
    task_settings = settings(max_updates=30, batch_size=32, test_per_length=5)
    configs = {
        "transformer": (tiny_transformer(), None),
        "rnn_attention": (tiny_gru("additive"), 1.0),
        "rnn_no_attention": (tiny_gru("none"), 1.0),
    }
    lines = []

    report = run_length_task(configs, task_settings, log=lines.append)

    assert json.loads(json.dumps(report)) == report
    assert report["settings"]["max_updates"] == 30 and report["settings"]["task"] == "reverse"
    assert list(report["models"]) == list(configs)
    for name, model in report["models"].items():
        assert set(model) == {"parameters", "train", "by_length", "seen", "unseen"}
        assert model["parameters"] > 0 and model["train"]["updates"] == 30
        assert [e["length"] for e in model["by_length"]] == list(range(2, 9))
        assert [e["seen_in_training"] for e in model["by_length"]] == [n <= 5 for n in range(2, 9)]
        for part in ("seen", "unseen"):
            assert set(model[part]) == {"sequence_accuracy", "token_accuracy"}
            assert all(0 <= value <= 1 for value in model[part].values())
        assert any(line.startswith(f"{name}: ") for line in lines)
    # The models are the architectures asked for, in the task's vocabulary: a GRU without attention is the smallest.
    sizes = {name: model["parameters"] for name, model in report["models"].items()}
    assert sizes["rnn_no_attention"] < sizes["rnn_attention"]

    # Without unseen lengths, their means are None.
    same = run_length_task({"gru": (tiny_gru(), None)}, settings(max_updates=1, max_test_length=5), log=lines.append)
    assert same["models"]["gru"]["unseen"] == {"sequence_accuracy": None, "token_accuracy": None}

    pytest.importorskip("matplotlib")
    path = plot_length_task(report, tmp_path / "figures" / "length.png", labels={"transformer": "Transformer"})
    assert path.read_bytes().startswith(b"\x89PNG")
