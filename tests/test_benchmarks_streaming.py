"""`vaswani_hf.benchmarks.streaming` (scripts/benchmark_streaming.py) on a tiny model and a small source file: every
run translates the same first lines of the file built from the test set, the whole-file path gives the stream's
translations, and the resume check kills a run after two windows and finds the continued output equal to an
uninterrupted run's. The measuring workers run in this process here (each is one call of `worker`, which
`measure` runs in a process of its own, as the translation benchmark does); the resume check's runs are processes
of their own, killed for real. (The figures themselves are the benchmark's business, not the tests'.)"""

import importlib.util
import json

import pytest
from conftest import SCRIPT_PAIRS, save_tiny_model
from transformers import GenerationConfig

from vaswani_hf.benchmarks import streaming

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def fast_model_dir(tmp_path):
    """The tiny model, decoding greedily with at most 5 new tokens by its own generation config (the benchmark
    decodes with the model's)."""
    model_dir = save_tiny_model(tmp_path / "model")
    generation = GenerationConfig.from_pretrained(model_dir)
    generation.update(num_beams=1, max_new_tokens=5, early_stopping=False, length_penalty=1.0)
    generation.save_pretrained(model_dir)
    return model_dir


def in_this_process(run, model_dir, source, lines, window, output) -> dict:
    result = output.with_name(f"{run}-result.json")
    streaming.worker(run, model_dir, str(source), lines, window, str(output), str(result))
    return json.loads(result.read_text())


def test_every_run_translates_the_same_lines_and_a_killed_run_continues(fast_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(streaming, "measure", in_this_process)
    test = tmp_path / "test.tsv"
    test.write_text("".join(f"{en}\t{de}\n" for en, de in SCRIPT_PAIRS if en), encoding="utf-8")
    runs = ["stream", "whole"] + (["ctranslate2"] if importlib.util.find_spec("ctranslate2") else [])
    output, table = tmp_path / "bench.json", tmp_path / "bench.md"
    streaming.main([str(fast_model_dir), "--test", str(test), "--file-lines", "600", "--lines", "40", "--window",
                    "16", "--runs", *runs, "--resume-lines", "600", "--resume-window", "60", "--output", str(output),
                    "--markdown", str(table)])  # fmt: skip

    data = json.loads(output.read_text())
    assert (data["file_lines"], data["lines"], data["window"], data["distinct_sentences"]) == (600, 40, 16, 3)
    rows = {row["run"]: row for row in data["rows"]}
    assert list(rows) == runs
    for row in rows.values():
        assert row["lines"] == 40 and row["seconds"] > row["read_seconds"]
        # The stream fingerprints the whole file first, the whole path reads it; CTranslate2's run reads as it goes.
        assert (row["read_seconds"] > 0) == (row["run"] != "ctranslate2")
        assert row["sentences_per_s"] > 0 and 0 < row["first_output_seconds"] <= row["seconds"]
        assert row["peak_mib"] is None or row["peak_mib"] >= 0
    # The same search over the same lines, in windows of 16 or all at once.
    assert rows["stream"]["identical_to_stream"] == rows["whole"]["identical_to_stream"] == 40
    # The whole-file path writes nothing before its last line; the stream writes its first window first.
    assert rows["whole"]["first_output_seconds"] == pytest.approx(rows["whole"]["seconds"], abs=0.05)
    assert rows["stream"]["first_output_seconds"] < rows["stream"]["seconds"] - 0.05

    resume = data["resume"]
    assert not resume["finished_before_the_kill"] and resume["signal"] == "SIGKILL"
    assert 120 <= resume["killed_after_lines"] < 600 and resume["killed_after_lines"] % 60 == 0
    assert resume["lines_kept_by_second_run"] == resume["killed_after_lines"]
    assert resume["lines_translated_by_second_run"] == 600 - resume["killed_after_lines"]
    assert resume["identical_to_uninterrupted"] is True

    record = data["provenance"]
    assert record["command"].endswith(str(table)) and record["cpu"]["model"]
    lines = table.read_text().splitlines()
    assert sum(line.startswith(f"| {run} |") for line in lines for run in runs) == len(runs)
    assert any(line.startswith("Resume check:") and "identical to an uninterrupted run's" in line for line in lines)


def test_nonsense_sizes_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        streaming.main(["model", "--lines", "0"])
    assert exit_info.value.code == 2 and "--lines must be at least 1" in capsys.readouterr().err
