"""Tests of `vaswani-evaluate` and `vaswani-translate`, run as a user runs them: in their own process, offline,
on a tiny randomly initialised model saved in a temporary folder."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import sacrebleu
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.cli import evaluate as evaluate_command
from vaswani_hf.evaluation import score, translate
from vaswani_hf.files import read_lines
from vaswani_hf.generation_vaswani import PAPER_DECODING

PAIRS = [
    ("the house is small", "das Haus ist klein"),
    ("the cat sleeps on the mat", "die Katze schläft auf der Matte"),
    ("", ""),
    ("a dog runs", "ein Hund läuft"),
]
SOURCES = [source for source, _ in PAIRS]
REFERENCES = [target for _, target in PAIRS]
STDIN_LINES = ["", SOURCES[0], "", SOURCES[3]]
FAST = dict(num_beams=1, max_new_tokens=5)
FAST_ARGS = ["--num-beams", "1", "--max-new-tokens", "5", "--no-progress"]
SCORE_KEYS = {"bleu", "chrf", "bleu_signature", "chrf_signature", "bleu_details", "num_sentences", "seconds"}


@dataclass
class ScriptRuns:
    """The inputs the scripts ran on, and their finished processes by name."""

    root: Path
    model_dir: Path
    processes: dict[str, subprocess.CompletedProcess]

    def translations(self, sentences: list[str]) -> list[str]:
        """What `translate` gives in this process with the saved model and the FAST decoding."""
        model = AutoModelForSeq2SeqLM.from_pretrained(self.model_dir)
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        return translate(model, tokenizer, sentences, **FAST)


def save_tiny_model(path: Path) -> Path:
    tokenizer = train_shared_bpe([text for pair in PAIRS for text in pair], vocab_size=80, min_frequency=1)
    torch.manual_seed(0)
    # max_position_embeddings leaves room for the paper's limit of source length + 50 output tokens.
    config = VaswaniConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        d_ff=32,
        num_heads=2,
        encoder_layers=2,
        decoder_layers=2,
        max_position_embeddings=80,
    )
    VaswaniForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> ScriptRuns:
    """Runs every script call of this file, all at once: each process spends most of its time importing torch and
    transformers, so running them side by side keeps this file fast."""
    root = tmp_path_factory.mktemp("scripts")
    model_dir = save_tiny_model(root / "model")
    src, ref = root / "test.en", root / "test.de"
    src.write_text("".join(line + "\n" for line in SOURCES), encoding="utf-8")
    ref.write_text("".join(line + "\n" for line in REFERENCES), encoding="utf-8")
    rows = {"translation": [{"en": source, "de": target} for source, target in PAIRS]}
    splits = {"validation": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)}
    datasets.DatasetDict(splits).save_to_disk(str(root / "wmt"))
    dataset_args = ["--dataset", root / "wmt", "--split", "test", "--src-lang", "en", "--tgt-lang", "de"]
    (root / "baseline").mkdir()
    translations = root / "translations" / "hyp.de"
    translations.parent.mkdir()

    # name: (script and arguments, working folder, stdin)
    calls = {
        "evaluate_files": (
            ["evaluate", model_dir, "--src", src, "--ref", ref, "--out-dir", root / "files", *FAST_ARGS],
            root,
            None,
        ),
        "evaluate_dataset": (
            ["evaluate", model_dir, *dataset_args, "--out-dir", root / "dataset", "--no-progress"],
            root,
            None,
        ),
        # No --out-dir: the files go to the working folder.
        "copy_baseline": (
            ["evaluate", "--copy-baseline", "--src", src, "--ref", ref],
            root / "baseline",
            None,
        ),
        "translate_file": (
            ["translate", model_dir, "--input", src, "--output", translations, "--max-tokens", 8, *FAST_ARGS],
            root,
            None,
        ),
        "translate_stdin": (
            ["translate", model_dir, *FAST_ARGS],
            root,
            "".join(f"{line}\n" for line in STDIN_LINES),
        ),
    }
    # One thread each: the model is tiny, and several processes each spinning threads on a few cores slow every one.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"vaswani_hf.cli.{command}", *map(str, args)],
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=cwd,
        )
        for name, ((command, *args), cwd, stdin) in calls.items()
    }
    processes = {}
    try:
        for name, process in running.items():
            stdout, stderr = process.communicate(input=calls[name][2], timeout=300)
            processes[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return ScriptRuns(root=root, model_dir=model_dir, processes=processes)


def finished(runs: ScriptRuns, name: str) -> subprocess.CompletedProcess:
    process = runs.processes[name]
    assert process.returncode == 0, process.stderr
    return process


def test_evaluate_files(runs):
    process = finished(runs, "evaluate_files")
    out_dir = runs.root / "files"
    assert sorted(child.name for child in out_dir.iterdir()) == ["hypotheses.txt", "scores.json"]  # no temp files
    hypotheses = read_lines(out_dir / "hypotheses.txt")
    assert hypotheses == runs.translations(SOURCES)
    assert hypotheses[2] == ""
    report = json.loads((out_dir / "scores.json").read_text(encoding="utf-8"))
    assert SCORE_KEYS <= set(report)
    assert report["num_sentences"] == len(SOURCES)
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
    assert report["num_sentences"] == len(PAIRS) and report["split"] == "test"
    assert {key: report["decoding"][key] for key in PAPER_DECODING} == PAPER_DECODING
    assert len(read_lines(out_dir / "hypotheses.txt")) == len(PAIRS)


def test_evaluate_copy_baseline(runs):
    finished(runs, "copy_baseline")
    out_dir = runs.root / "baseline"
    report = json.loads((out_dir / "scores.json").read_text(encoding="utf-8"))
    assert report["bleu"] == pytest.approx(sacrebleu.corpus_bleu(SOURCES, [REFERENCES]).score)
    assert report["chrf"] == pytest.approx(sacrebleu.corpus_chrf(SOURCES, [REFERENCES]).score)
    assert report["model"] is None and report["num_sentences"] == len(SOURCES)
    assert read_lines(out_dir / "hypotheses.txt") == SOURCES


def test_translate_file(runs):
    finished(runs, "translate_file")
    output = read_lines(runs.root / "translations" / "hyp.de")
    assert output == runs.translations(SOURCES)
    assert output[2] == ""


def test_translate_stdin_to_stdout(runs):
    output = finished(runs, "translate_stdin").stdout.split("\n")
    assert output[-1] == "" and output[:-1] == runs.translations(STDIN_LINES)
    assert output[0] == output[2] == "" and output[1] and output[3]


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
