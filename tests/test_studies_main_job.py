"""A tiny main job end to end (`vaswani_hf.studies.main_job`): the default corpus built from fake packages, a tiny
model of the small-cpu recipe trained for a few updates by the training loop in its own process, then the scores, the
curve and its figure, the translations and the model card; started again, the finished run is kept."""

import json

import pytest
from train_runs import TINY_RUN

from vaswani_hf.run_dir import RunDir
from vaswani_hf.studies.main_job import EXAMPLES, TEST_SPLITS, run_main_job

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_tiny_main_job_writes_its_results_curve_and_card(tmp_path, monkeypatch, fake_corpus_fetch):
    monkeypatch.setenv("VASWANI_HF_CACHE", str(tmp_path / "cache"))  # where the training process finds the corpus
    lines = []
    results = run_main_job(tmp_path / "job", processes=1, overrides=TINY_RUN, log=lines.append)

    run = RunDir(tmp_path / "job")
    assert json.loads(run.results.read_text()) == json.loads(json.dumps(results))
    assert list(results) == [
        "provenance", "corpus", "train", "test", "copy_baseline", "curve", "examples", "wall_minutes"
    ]  # fmt: skip
    assert results["train"]["updates"] == 4
    assert [(p["checkpoint"], p["updates"]) for p in results["curve"]] == [
        ("checkpoint-00000002", 2),
        ("checkpoint-00000004", 4),
    ]
    assert all(list(p) == ["checkpoint", "updates", "minutes", "bleu", "chrf"] for p in results["curve"])
    for split in TEST_SPLITS:
        assert {"bleu", "chrf", "bleu_signature", "seconds"} <= set(results["test"][split])
        hypotheses = (run.eval(split) / "hypotheses.txt").read_text().splitlines()
        assert len(hypotheses) == results["corpus"]["pairs"][split]
    assert list(results["examples"]) == EXAMPLES
    assert (run.root / "bleu_curve.png").stat().st_size > 1000
    assert (run.model / "README.md").is_file()
    stages = [line.split(".")[0] for line in lines if line.startswith("== ") and line[3].isdigit()]
    assert stages == ["== 1", "== 2", "== 3", "== 4", "== 5", "== 6"]
    assert f"   drew {run.root / 'bleu_curve.png'}" in lines

    # Started again, the job keeps the finished run and measures it again; without the curve on request.
    lines.clear()
    again = run_main_job(tmp_path / "job", processes=1, curve=False, overrides=TINY_RUN, log=lines.append)
    assert f"   {run.root} holds a finished run; delete it to train again" in lines
    assert again["train"] == results["train"] and "curve" not in again
