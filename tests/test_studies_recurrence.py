"""A tiny run of `vaswani_hf.studies.recurrence` end to end: three tiny models trained for a few updates on the toy
corpus by the training command, then every measurement of the study and its figures. (The study itself runs with
`vaswani-study-recurrence`; its figures in docs/studies.md come from that command.)"""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from vaswani_hf.cli.study_recurrence import main, parse_args
from vaswani_hf.studies.length_task import LengthTaskSettings
from vaswani_hf.studies.recurrence import (
    FIGURES,
    MODELS,
    StudySettings,
    check_settings,
    render_markdown,
    run_study,
    verdicts,
)

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = {
    "train": {"max_tokens": 128, "update_tokens": 200, "warmup_steps": 10, "lr_scale": 0.5, "log_every": 10},
    "eval": {"every_steps": None},
}
TRANSFORMER = {"model": {"d_model": 16, "d_ff": 32, "num_heads": 2, "encoder_layers": 1, "decoder_layers": 1}}
RNN = {"model": {"architecture": "rnn", "hidden_size": 16, "embedding_size": 8}}


def write_config(path: Path, model: dict) -> str:
    model = {key: value for key, value in model.items() if value is not None}
    path.write_text(yaml.safe_dump({**RECIPE, "model": model}))
    return str(path)


def tiny_settings(corpus, tmp_path, **changes) -> StudySettings:
    test_set = tmp_path / "test.jsonl"
    test_set.write_text("".join((corpus / "train.jsonl").read_text().splitlines(keepends=True)[:24]))
    settings = StudySettings(
        output_dir=str(tmp_path / "study"),
        processes=1,
        corpus=str(corpus / "train.jsonl"),
        test=str(test_set),
        curve_sentences=6,
        gradient_sentences=2,
        lengths=(4, 8),
        timing_batch_size=2,
        configs={
            "transformer": write_config(tmp_path / "transformer.yaml", TRANSFORMER["model"]),
            "rnn_attention": write_config(tmp_path / "rnn.yaml", RNN["model"]),
            "rnn_no_attention": write_config(tmp_path / "rnn.yaml", RNN["model"]),
        },
        # Updates, not minutes, so that the curves have a known number of points.
        overrides=(
            "train.max_minutes=null", "train.max_steps=20", "checkpoint.every_minutes=null",
            "checkpoint.every_steps=10", "checkpoint.average_last=2", f"data.validation={test_set}",
        ),
        # Two candidates for the model with attention, one (no search to speak of) for the other.
        search={
            "rnn_attention": {"eq3": (), "adam": ("train.schedule=constant", "train.learning_rate=0.01")},
            "rnn_no_attention": {"adam": ("train.schedule=constant",)},
        },
        search_sentences=4,
        bucket_sentences=5,
        gradient_updates=3,
        length_task=LengthTaskSettings(
            symbols=4, max_train_length=4, max_test_length=6, train_examples=64, test_per_length=2, batch_size=8,
            minutes=None, max_updates=3,
        ),
    )  # fmt: skip
    return dataclasses.replace(settings, **changes)


@pytest.fixture(scope="module")
def tiny_study(corpus, tmp_path_factory, one_thread):
    """A tiny study run once for the tests below: (settings, report)."""
    tmp_path = tmp_path_factory.mktemp("tiny-study")
    settings = tiny_settings(corpus, tmp_path)
    return settings, run_study(settings)


def test_a_tiny_study_produces_every_section(tiny_study):
    settings, report = tiny_study
    out = Path(settings.output_dir)
    assert json.loads((out / "study.json").read_text()) == json.loads(json.dumps(report))
    assert report["provenance"]["commit"] is None or len(report["provenance"]["commit"]) >= 40
    assert {"cpu", "threads", "versions", "command"} <= set(report["provenance"])
    assert list(report["models"]) == list(MODELS)
    tokenizer = (out / "transformer" / "tokenizer" / "tokenizer.json").read_text()

    # The search: every candidate scored on the validation split, the lowest loss chosen, its recipe trained.
    search = report["search"]["rnn_attention"]
    assert set(search["candidates"]) == {"eq3", "adam"}
    losses = {c: r["validation_loss"] for c, r in search["candidates"].items()}
    assert search["chosen"] == min(losses, key=losses.get)
    assert all(r["updates"] == 20 and 0 <= r["validation_bleu"] <= 100 for r in search["candidates"].values())
    chosen_schedule = "constant" if search["chosen"] == "adam" else "noam"
    assert report["models"]["rnn_attention"]["recipe"]["schedule"] == chosen_schedule
    assert report["models"]["rnn_no_attention"]["recipe"]["schedule"] == "constant"
    assert report["models"]["transformer"]["recipe"]["schedule"] == "noam"

    for name, entry in report["models"].items():
        # One tokenizer for all: the later runs read the first one's.
        assert (out / name / "tokenizer" / "tokenizer.json").read_text() == tokenizer
        assert entry["train"]["updates"] == 20
        assert [p["updates"] for p in entry["curve"]] == [10, 20]
        assert all(p["validation_loss"] > 0 and 0 <= p["bleu"] <= 100 for p in entry["curve"])
        # Buckets of at least 5 sentences, covering all 24.
        assert sum(b["sentences"] for b in entry["bleu_by_length"]) == 24
        assert all(b["sentences"] >= 5 for b in entry["bleu_by_length"])
        recurrent = entry["model_type"] == "rnn_seq2seq"
        assert [p["sequential_operations"] for p in entry["step_seconds"]] == ([4, 8] if recurrent else [1, 1])
        for when in ("initialisation", "trained"):
            flow = entry["gradient_by_distance"][when]
            assert flow["distance"][0] == 0 and all(norm > 0 for norm in flow["mean_norm"])
        norms = entry["gradient_norms"]
        assert norms["recipe"]["clip_norm"] == entry["recipe"]["clip_norm"]
        assert norms["unclipped"]["clip_norm"] is None
        assert len(norms["unclipped"]["norms"]) == 3 and norms["unclipped"]["norm_max"] > 0
    assert report["models"]["rnn_no_attention"]["attention"] == "none"

    task = report["length_task"]
    assert set(task["models"]) == set(MODELS)
    for result in task["models"].values():
        assert [r["length"] for r in result["by_length"]] == list(range(1, 7))
        assert [r["seen_in_training"] for r in result["by_length"]] == [True] * 4 + [False] * 2
        assert result["train"]["updates"] == 3

    # A model without attention has no alignment to show.
    assert sorted(report["attention"]) == ["rnn_attention", "transformer"]
    assert [v["verdict"] for v in report["verdicts"]] == [v["verdict"] for v in verdicts(report)]
    assert len(report["verdicts"]) == 6
    assert all(v["verdict"] in ("supported", "not supported", "mixed") for v in report["verdicts"])
    assert (out / "study.md").read_text() == render_markdown(report)
    for figure in FIGURES:
        assert (out / figure).stat().st_size > 1000, figure
        assert figure in (out / "study.md").read_text() or figure in ("attention.png",), figure


def test_the_figures_and_tables_are_drawn_again_from_study_json(tiny_study, tmp_path):
    out = Path(tiny_study[0].output_dir)
    for figure in (*FIGURES, "study.md"):
        (out / figure).unlink()
    assert main(["--replot", "--output-dir", str(out)]) == 0
    assert all((out / figure).is_file() for figure in (*FIGURES, "study.md"))
    assert (out / "study.md").read_text() == render_markdown(tiny_study[1])
    with pytest.raises(SystemExit, match="run the study first"):
        main(["--replot", "--output-dir", str(tmp_path / "nothing")])


def test_a_study_started_again_keeps_its_trainings_and_refuses_other_settings(tiny_study):
    settings, report = tiny_study
    # Started again with the same settings, the study keeps the finished trainings and searches.
    again = run_study(settings)
    assert again["models"]["transformer"]["train"] == report["models"]["transformer"]["train"]
    assert again["search"] == report["search"]

    assert again["earlier_minutes"] == report["earlier_minutes"] == []

    # With other training settings, the folder is refused rather than its trainings reused; so is a shorter budget.
    record = (Path(settings.output_dir) / "study-settings.json").read_text()
    for change, message in (
        ({"minutes": 3.0}, "minutes: 40.0 then, 3.0 now"),
        ({"search_minutes": 1.0}, "search_minutes: 3.0 then, 1.0 now"),
        ({"minutes": 30.0, "gradient_updates": 4}, "gradient_updates: 3 then, 4 now; minutes: 40.0 then, 30.0 now"),
    ):
        with pytest.raises(ValueError, match=rf"other settings \({message}\)"):
            run_study(dataclasses.replace(settings, **change))
    assert (Path(settings.output_dir) / "study-settings.json").read_text() == record
    # Settings that only change a measurement may differ.
    assert check_settings(dataclasses.replace(settings, curve_sentences=3)) == []
    # A longer budget continues the trainings; the record keeps the budgets they began with.
    assert check_settings(dataclasses.replace(settings, minutes=60.0)) == [40.0]
    assert check_settings(dataclasses.replace(settings, minutes=90.0)) == [40.0, 60.0]
    assert check_settings(dataclasses.replace(settings, minutes=90.0)) == [40.0, 60.0]


def test_a_folder_of_something_else_is_refused(tmp_path, corpus):
    settings = tiny_settings(corpus, tmp_path)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no study-settings.json"):
        check_settings(settings)
    assert (tmp_path / "study" / "notes.txt").read_text() == "mine"


def test_the_command_checks_its_options(capsys):
    settings = parse_args(["train.seed=2", "--minutes", "3", "--lengths", "8", "16", "--length-minutes", "0.5"])
    assert (settings.minutes, settings.lengths, settings.overrides) == (3.0, (8, 16), ("train.seed=2",))
    assert (settings.length_task.minutes, settings.search) == (0.5, StudySettings().search)
    assert settings.configs == {name: spec[0] for name, spec in MODELS.items()}
    for argv, message in (
        (["--minutes", "0"], "--minutes must be positive"),
        (["--corpus", "data/train"], "needs --test"),
        (["--processes", "0"], "--processes must be at least 1"),
        (["--search-minutes", "0"], "--search-minutes must be positive"),
        (["--bucket-sentences", "0"], "--bucket-sentences must be at least 1"),
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err


def test_a_training_to_a_shorter_budget_trains_on_and_one_to_this_budget_is_kept(tiny_study, tmp_path, monkeypatch):
    from vaswani_hf.studies import recurrence

    settings, _ = tiny_study
    run = tmp_path / "run"
    shutil.copytree(Path(settings.output_dir) / "rnn_no_attention", run)
    calls = []
    monkeypatch.setattr(recurrence, "run_training", lambda processes, arguments: calls.append(arguments))
    for budget, trains_on in ((None, False), (40.0, False), (10.0, True)):
        config = yaml.safe_load((run / "run_config.yaml").read_text())
        config["train"]["max_minutes"] = budget
        (run / "run_config.yaml").write_text(yaml.safe_dump(config))
        calls.clear()
        recurrence._train(dataclasses.replace(settings, overrides=()), run, "rnn_no_attention", None)
        assert bool(calls) == trains_on, budget
    # Where it trains on, it continues the run from its checkpoints to the study's budget.
    assert "--resume" in calls[-1] and "train.max_minutes=40.0" in calls[-1]
