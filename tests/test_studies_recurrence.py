"""A tiny run of `vaswani_hf.studies.recurrence` end to end: three tiny models trained for a few updates on the toy
corpus by the training command, then every measurement of the study and its figures. (The study itself runs with
`vaswani-study-recurrence`; its figures in docs/studies.md come from that command.)"""

import json
from pathlib import Path

import pytest
import yaml

from vaswani_hf.cli.study_recurrence import main, parse_args
from vaswani_hf.studies.recurrence import FIGURES, MODELS, StudySettings, run_study

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


def test_a_tiny_study_trains_the_three_models_and_measures_them(corpus, tmp_path):
    rnn_model = RNN["model"]
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
            "rnn_attention": write_config(tmp_path / "rnn.yaml", rnn_model),
            "rnn_no_attention": write_config(tmp_path / "rnn.yaml", rnn_model),
        },
        # Updates, not minutes, so that the curves have a known number of points.
        overrides=(
            "train.max_minutes=null", "train.max_steps=20", "checkpoint.every_minutes=null",
            "checkpoint.every_steps=10", "checkpoint.average_last=2", f"data.validation={test_set}",
        ),
    )  # fmt: skip
    report = run_study(settings)

    out = tmp_path / "study"
    assert json.loads((out / "study.json").read_text()) == json.loads(json.dumps(report))
    assert list(report["models"]) == list(MODELS)
    tokenizer = (out / "transformer" / "tokenizer" / "tokenizer.json").read_text()
    for name, entry in report["models"].items():
        # One tokenizer for all: the later runs read the first one's.
        assert (out / name / "tokenizer" / "tokenizer.json").read_text() == tokenizer
        assert entry["train"]["updates"] == 20
        assert [p["updates"] for p in entry["curve"]] == [10, 20]
        assert all(p["validation_loss"] > 0 and 0 <= p["bleu"] <= 100 for p in entry["curve"])
        assert sum(b["sentences"] for b in entry["bleu_by_length"]) == 24
        recurrent = entry["model_type"] == "rnn_seq2seq"
        assert [p["sequential_operations"] for p in entry["step_seconds"]] == ([4, 8] if recurrent else [1, 1])
        for when in ("initialisation", "trained"):
            flow = entry["gradient_by_distance"][when]
            assert flow["distance"][0] == 0 and all(norm > 0 for norm in flow["mean_norm"])
    assert report["models"]["rnn_no_attention"]["model_type"] == "rnn_seq2seq"
    # A model without attention has no alignment to show.
    assert sorted(report["attention"]) == ["rnn_attention", "transformer"]
    for figure in FIGURES:
        assert (out / figure).stat().st_size > 1000, figure

    # The figures can be drawn again from study.json alone.
    for figure in FIGURES:
        (out / figure).unlink()
    assert main(["--replot", "--output-dir", str(out)]) == 0
    assert all((out / figure).is_file() for figure in FIGURES)
    with pytest.raises(SystemExit, match="run the study first"):
        main(["--replot", "--output-dir", str(tmp_path / "nothing")])

    # Started again, the study keeps the finished trainings and measures again.
    again = run_study(settings)
    assert again["models"]["transformer"]["train"] == report["models"]["transformer"]["train"]


def test_the_command_checks_its_options(capsys):
    settings = parse_args(["train.seed=2", "--minutes", "3", "--lengths", "8", "16"])
    assert (settings.minutes, settings.lengths, settings.overrides) == (3.0, (8, 16), ("train.seed=2",))
    assert settings.configs == {name: spec[0] for name, spec in MODELS.items()}
    for argv, message in (
        (["--minutes", "0"], "--minutes must be positive"),
        (["--corpus", "data/train"], "needs --test"),
        (["--processes", "0"], "--processes must be at least 1"),
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err
