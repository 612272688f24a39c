"""Tests of `vaswani_hf.training.learning_curve`: each checkpoint a run kept, on its own, scored against its updates and
minutes, on a run folder of two tiny checkpoints."""

import dataclasses
import json

import pytest
from conftest import word_pairs
from datasets import Dataset

from vaswani_hf.data.parallel import tokenize_pairs
from vaswani_hf.evaluation import score, translate
from vaswani_hf.run_dir import RunDir
from vaswani_hf.training.checkpoints import TRAINING_STATE_FILE, TrainingState
from vaswani_hf.training.learning_curve import learning_curve

pytestmark = pytest.mark.usefixtures("one_thread")

# (update, training seconds) of each checkpoint; checkpoint i holds the model of seed i.
CHECKPOINTS = [(10, 30.0), (20, 90.0)]


@pytest.fixture
def run(tmp_path, make_word_pairs_model) -> RunDir:
    """A run folder as training leaves it: the model config and checkpoints with their weights and training state."""
    run = RunDir(tmp_path / "run")
    for seed, (step, seconds) in enumerate(CHECKPOINTS):
        checkpoint = run.checkpoints / f"checkpoint-{step:08d}"
        model = make_word_pairs_model(seed)
        model.save_pretrained(checkpoint)  # model.safetensors, as Accelerate's save_state writes it
        state = TrainingState(step=step, train_seconds=seconds)
        (checkpoint / TRAINING_STATE_FILE).write_text(json.dumps(dataclasses.asdict(state)))
    model.config.save_pretrained(run.model_config)
    return run


@pytest.fixture
def pairs() -> tuple[list[str], list[str]]:
    rows = word_pairs([3, 4, 5], seed=1)
    return [r["translation"]["en"] for r in rows], [r["translation"]["de"] for r in rows]


def test_each_checkpoint_is_scored_on_its_own(run, pairs, make_word_pairs_model, word_pairs_tokenizer):
    seen = []
    points = learning_curve(run, word_pairs_tokenizer, *pairs, on_point=seen.append)

    assert seen == points
    # The keys of the main job's results.json, in its order.
    assert [list(p) for p in points] == [["checkpoint", "updates", "minutes", "bleu", "chrf"]] * 2
    assert [(p["checkpoint"], p["updates"], p["minutes"]) for p in points] == [
        ("checkpoint-00000010", 10, 0.5),
        ("checkpoint-00000020", 20, 1.5),
    ]
    for seed, point in enumerate(points):
        expected = score(translate(make_word_pairs_model(seed).eval(), word_pairs_tokenizer, pairs[0]), pairs[1])
        assert (point["bleu"], point["chrf"]) == (expected["bleu"], expected["chrf"])


def test_a_validation_set_adds_the_loss_of_each_checkpoint(run, pairs, word_pairs_tokenizer):
    valid_set = tokenize_pairs(
        Dataset.from_list(word_pairs([4, 6])), word_pairs_tokenizer, src_lang="en", tgt_lang="de"
    )
    points = learning_curve(run, word_pairs_tokenizer, *pairs, valid_set=valid_set[0])

    # The keys of the recurrence study's study.json, in its order.
    assert [list(p) for p in points] == [["checkpoint", "updates", "minutes", "validation_loss", "bleu", "chrf"]] * 2
    losses = [p["validation_loss"] for p in points]
    assert all(loss > 0 for loss in losses) and losses[0] != losses[1]


def test_a_run_without_checkpoints_has_no_curve(tmp_path, pairs, word_pairs_tokenizer):
    assert learning_curve(RunDir(tmp_path / "empty"), word_pairs_tokenizer, *pairs) == []
