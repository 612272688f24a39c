"""Tests of `vaswani-main-job` (vaswani_hf.cli.main_job), the entry point of the main job study: its options reach
`run_main_job` (`test_studies_main_job.py` runs the job itself)."""

from vaswani_hf.cli import main_job
from vaswani_hf.studies.main_job import MINUTES, PROCESSES


def test_the_options_reach_the_study(monkeypatch):
    calls = []
    monkeypatch.setattr(main_job, "run_main_job", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main_job.main([]) == 0
    assert (
        main_job.main(["--output-dir", "out", "--minutes", "5", "--processes", "1", "--no-curve", "train.seed=2"]) == 0
    )
    assert calls == [
        (("outputs/main-job", MINUTES, PROCESSES), {"curve": True, "overrides": []}),
        (("out", 5.0, 1), {"curve": False, "overrides": ["train.seed=2"]}),
    ]
