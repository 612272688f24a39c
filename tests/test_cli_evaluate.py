"""Tests of `vaswani-evaluate` (vaswani_hf.cli.evaluate), run as a user runs it: in its own process, offline, on a
tiny randomly initialised model saved in a temporary folder; in this process, interrupted and continued; and its
reading of arguments and test sets."""

import json

import datasets
import pytest
import sacrebleu
from conftest import (
    FAST_DECODING_ARGS,
    SCRIPT_PAIRS,
    SCRIPT_SOURCES,
    ScriptRuns,
    finished,
    run_scripts,
    save_tiny_model,
)

from vaswani_hf.cli import evaluate as evaluate_command
from vaswani_hf.evaluation import score
from vaswani_hf.files import PartialFile, read_lines
from vaswani_hf.generation_vaswani import PAPER_DECODING

REFERENCES = [target for _, target in SCRIPT_PAIRS]
SCORE_KEYS = {"bleu", "chrf", "bleu_signature", "chrf_signature", "bleu_details", "num_sentences", "seconds"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> ScriptRuns:
    """Runs every `vaswani-evaluate` call of this file, all at once (see `run_scripts`)."""
    root = tmp_path_factory.mktemp("evaluate")
    model_dir = save_tiny_model(root / "model")
    src, ref = root / "test.en", root / "test.de"
    src.write_text("".join(line + "\n" for line in SCRIPT_SOURCES), encoding="utf-8")
    ref.write_text("".join(line + "\n" for line in REFERENCES), encoding="utf-8")
    rows = {"translation": [{"en": source, "de": target} for source, target in SCRIPT_PAIRS]}
    splits = {"validation": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
    datasets.DatasetDict(splits).save_to_disk(str(root / "wmt"))
    dataset_args = ["--dataset", root / "wmt", "--split", "test", "--src-lang", "en", "--tgt-lang", "de"]
    (root / "baseline").mkdir()

    # name: (script and arguments, working folder, stdin)
    calls = {
        "evaluate_files": (
            ["evaluate", model_dir, "--src", src, "--ref", ref, "--output-dir", root / "files", *FAST_DECODING_ARGS],
            root,
            None,
        ),
        "evaluate_dataset": (
            ["evaluate", model_dir, *dataset_args, "--output-dir", root / "dataset", "--no-progress"],
            root,
            None,
        ),
        # No --output-dir: the files go to the working folder.
        "copy_baseline": (
            ["evaluate", "--copy-baseline", "--src", src, "--ref", ref],
            root / "baseline",
            None,
        ),
    }
    return run_scripts(root, model_dir, calls)


def test_evaluate_files(runs):
    process = finished(runs, "evaluate_files")
    out_dir = runs.root / "files"
    assert sorted(child.name for child in out_dir.iterdir()) == ["hypotheses.txt", "scores.json"]  # no temp files
    hypotheses = read_lines(out_dir / "hypotheses.txt")
    assert hypotheses == runs.translations(SCRIPT_SOURCES)
    assert hypotheses[2] == ""
    report = json.loads((out_dir / "scores.json").read_text(encoding="utf-8"))
    assert SCORE_KEYS <= set(report)
    assert report["num_sentences"] == len(SCRIPT_SOURCES)
    assert {"command", "commit", "versions", "cpu"} <= set(report["provenance"])
    assert report["decoding"]["num_beams"] == 1 and report["decoding"]["max_new_tokens"] == 5
    expected = score(hypotheses, REFERENCES)
    assert report["bleu"] == pytest.approx(expected["bleu"]) and report["chrf"] == pytest.approx(expected["chrf"])
    assert report["bleu_signature"] == expected["bleu_signature"]
    summary = process.stdout.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith(f"BLEU {report['bleu']:.2f}  chrF {report['chrf']:.2f}")


def test_evaluate_dataset_with_the_paper_decoding(runs):
    finished(runs, "evaluate_dataset")
    out_dir = runs.root / "dataset"
    report = json.loads((out_dir / "scores.json").read_text(encoding="utf-8"))
    assert SCORE_KEYS <= set(report)
    assert report["num_sentences"] == len(SCRIPT_PAIRS) and report["split"] == "test"
    assert {key: report["decoding"][key] for key in PAPER_DECODING} == PAPER_DECODING
    assert len(read_lines(out_dir / "hypotheses.txt")) == len(SCRIPT_PAIRS)


def test_evaluate_copy_baseline(runs):
    finished(runs, "copy_baseline")
    out_dir = runs.root / "baseline"
    report = json.loads((out_dir / "scores.json").read_text(encoding="utf-8"))
    assert report["bleu"] == pytest.approx(sacrebleu.corpus_bleu(SCRIPT_SOURCES, [REFERENCES]).score)
    assert report["chrf"] == pytest.approx(sacrebleu.corpus_chrf(SCRIPT_SOURCES, [REFERENCES]).score)
    assert report["model"] is None and report["num_sentences"] == len(SCRIPT_SOURCES)
    assert read_lines(out_dir / "hypotheses.txt") == SCRIPT_SOURCES


def windows_written(monkeypatch, interrupt_after: int | None = None) -> list[int]:
    """The lines of each window of hypotheses written, with Ctrl-C (KeyboardInterrupt) once `interrupt_after` are."""
    written = []
    append = PartialFile.append

    def counted(self, text, lines):
        append(self, text, lines)
        written.append(lines)
        if len(written) == interrupt_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(PartialFile, "append", counted)
    return written


def test_an_interrupted_evaluation_is_continued_and_scored_whole(runs, tmp_path, monkeypatch):
    pairs = SCRIPT_PAIRS * 3
    src, ref = tmp_path / "test.en", tmp_path / "test.de"
    src.write_text("".join(source + "\n" for source, _ in pairs), encoding="utf-8")
    ref.write_text("".join(target + "\n" for _, target in pairs), encoding="utf-8")
    argv = [str(runs.model_dir), "--src", str(src), "--ref", str(ref), "--window", "3", *FAST_DECODING_ARGS]
    evaluate_command.main([*argv, "--output-dir", str(tmp_path / "reference")])
    out_dir = tmp_path / "results"
    windows_written(monkeypatch, interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_command.main([*argv, "--output-dir", str(out_dir)])
    monkeypatch.undo()
    assert sorted(child.name for child in out_dir.iterdir()) == [
        "hypotheses.txt.partial",
        "hypotheses.txt.partial.json",
    ]

    with pytest.raises(SystemExit) as exit_info:
        evaluate_command.main([*argv, "--output-dir", str(out_dir), "--max-new-tokens", "4"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert "hypotheses.txt.partial holds the first 6 lines" in message and "max_new_tokens 5 then, 4 now" in message

    written = windows_written(monkeypatch)
    evaluate_command.main([*argv, "--output-dir", str(out_dir)])
    assert written == [3, 3]  # the last two windows; the first two are not translated again
    assert sorted(child.name for child in out_dir.iterdir()) == ["hypotheses.txt", "scores.json"]
    reference = json.loads((tmp_path / "reference" / "scores.json").read_text(encoding="utf-8"))
    report = json.loads((out_dir / "scores.json").read_text(encoding="utf-8"))
    assert report["lines_from_interrupted_run"] == 6 and reference["lines_from_interrupted_run"] == 0
    assert read_lines(out_dir / "hypotheses.txt") == read_lines(tmp_path / "reference" / "hypotheses.txt")
    assert report["bleu"] == reference["bleu"] and report["num_sentences"] == len(pairs)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--src", "s", "--ref", "r"], "either MODEL_DIR or --copy-baseline"),
        (["model", "--copy-baseline", "--src", "s", "--ref", "r"], "either MODEL_DIR or --copy-baseline"),
        (["model"], "either as --src and --ref files or as --dataset"),
        (["model", "--src", "s"], "--src and --ref go together"),
        (["model", "--dataset", "d", "--src", "s", "--ref", "r"], "either as --src and --ref files or as --dataset"),
        (["model", "--dataset", "d", "--src-lang", "en"], "--dataset needs --src-lang and --tgt-lang"),
    ],
)
def test_evaluate_argument_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as error:
        evaluate_command.parse_args(argv)
    assert error.value.code == 2
    assert message in capsys.readouterr().err


def test_evaluate_reads_several_reference_files(tmp_path):
    script = evaluate_command
    src, first, second, short = (tmp_path / name for name in ("src", "first", "second", "short"))
    src.write_text("a\nb\n", encoding="utf-8")
    first.write_text("a1\nb1\n", encoding="utf-8")
    second.write_text("a2\nb2\n", encoding="utf-8")
    short.write_text("a3\n", encoding="utf-8")

    sources, references = script.load_test_set(script.parse_args(["m", "--src", str(src), "--ref", str(first)]))
    assert (sources, references) == (["a", "b"], ["a1", "b1"])
    args = script.parse_args(["m", "--src", str(src), "--ref", str(first), str(second)])
    assert script.load_test_set(args) == (["a", "b"], [["a1", "a2"], ["b1", "b2"]])
    with pytest.raises(SystemExit, match="has 2 lines but .*short has 1"):
        script.load_test_set(script.parse_args(["m", "--src", str(src), "--ref", str(first), str(short)]))


def test_evaluate_reads_any_parallel_form_and_names_a_missing_language(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text('{"en": "a", "de": "b"}\n{"en": "c", "de": "d"}\n', encoding="utf-8")
    args = evaluate_command.parse_args(["m", "--dataset", str(path), "--src-lang", "en", "--tgt-lang", "de"])
    assert evaluate_command.load_test_set(args) == (["a", "c"], ["b", "d"])
    args = evaluate_command.parse_args(["m", "--dataset", str(path), "--src-lang", "en", "--tgt-lang", "fr"])
    with pytest.raises(SystemExit, match="no 'fr' key"):
        evaluate_command.load_test_set(args)
