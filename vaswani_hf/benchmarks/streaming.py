"""Translating a large file: window by window (`vaswani-translate --output`), against the whole file at once and
CTranslate2, and an interrupted run continued.

    python scripts/benchmark_streaming.py outputs/main-job-postnorm/model --lines 20000 \
        --output docs/benchmarks/streaming-cpu.json --markdown docs/benchmarks/streaming-cpu.md

Builds a source file of 1,000,000 lines (`--file-lines`): the English sentences of the built-in corpus's help test
split (`--test` for another parallel file) repeated in order. Decoding a million lines with the paper's beam search
takes hours on a few CPU cores, so `--lines N` translates only the first N lines of that file (default: all of them).
The stream and the whole path still read the whole file as they would (the stream's fingerprint, the whole path's
`read_lines`), so their memory is that of a file of this size; the report says how many lines were translated. A
fixed number of lines rather than a time budget gives every run the same sentences. Each run is a fresh process, and
reports the peak memory its reading and translating add (Linux VmHWM, as scripts/benchmark.py measures it), the time
it spent reading before translating, sentences/s of the translating, and the time to the first output line:

- `stream`: `vaswani_hf.evaluation.translate_file`, what `vaswani-translate --input FILE --output OUT` runs: the whole
  file read once to fingerprint it, then its first N lines in windows of `--window` lines (10,000 by default), each
  sorted into batches of at most `evaluation.DEFAULT_MAX_TOKENS` tokens (the default of `--max-tokens`),
  decoded with the model's generation config (the paper's beam 4, GNMT penalty 0.6, source length + 50), and
  appended to OUT.partial when it is done. The first output line is when the first window reaches the file: when the
  stream asks for the next window's first line, which it reads only then.
- `whole`: what `vaswani-translate` did before: `files.read_lines` of the whole file, then `evaluation.translate`,
  which tokenizes every line before its first batch and writes nothing before its last. Only the first N lines are
  decoded, while the token ids of the others are held beside them, as `translate` would hold them: its memory is the
  whole file's, its speed that of N lines sorted all together.
- `ctranslate2` (when CTranslate2 is installed): the model exported with `vaswani_hf.export.ctranslate2`, the first N
  lines read in the same windows, each decoded by CTranslate2's translator (beam 4, its |Y| ** 0.6 penalty, batches of
  4096 source tokens) and written when it is done.

Then the resume check: a file of the first `--resume-lines` lines is translated by `translate_file` in windows of
`--resume-window` lines, in a process killed with SIGKILL once two windows are written, then again to the end, and
compared byte for byte with an uninterrupted run's output (run beside the killed one). The report says after how many
lines the kill came and how many the second run translated.

The report counts each run's hypotheses that are identical to the stream's (the whole path runs the same search,
CTranslate2 another length penalty). Run it alone on the machine: the figures are times.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import files
from ..evaluation import DEFAULT_WINDOW
from ..provenance import provenance
from .translation import BEAM, CTRANSLATE2_MAX_TOKENS, load_test_set

RUNS = ("stream", "whole", "ctranslate2")
FILE_LINES = 1_000_000
RESUME_LINES = 2_000
RESUME_WINDOW = 200
WORKER = "vaswani_hf.benchmarks.streaming"


def build_source_file(path: Path, sentences: list[str], lines: int) -> None:
    """Writes `lines` lines to `path`: `sentences` repeated in order."""
    block = "".join(sentence + "\n" for sentence in sentences)
    repeats, rest = divmod(lines, len(sentences))
    with open(path, "w", encoding="utf-8", newline="") as file:
        for _ in range(repeats):
            file.write(block)
        file.write("".join(sentence + "\n" for sentence in sentences[:rest]))


def first_lines(path: Path, count: int) -> itertools.islice:
    """The first `count` lines of `path`, read as they are asked for."""
    return itertools.islice(files.iter_lines(path), count)


# ---------------------------------------------------------------------------------------------------------------------
# One run, in its own process
# ---------------------------------------------------------------------------------------------------------------------
def marking_window_ends(lines, window: int, marks: list[float]):
    """`lines`, appending to `marks` the time at which the first line of each window after the first is asked for:
    the stream reads a window only once the previous one is written, so this is when that one reached the file."""
    for index, line in enumerate(lines):
        if index and index % window == 0:
            marks.append(time.perf_counter())
        yield line


def prepare(run: str, model_dir: str, scratch: str):
    """Loads (and for CTranslate2 converts) the model, and returns `(warm_up, translate)` for the run:
    `warm_up(sentences)` translates a few sentences with the run's engine, `translate(source, lines, window, output)
    -> {"read_seconds", "first_output_at"}` is what is measured; none of the loading is timed."""
    import torch

    from .. import evaluation

    model, tokenizer, _ = evaluation.load_model(model_dir, device="cpu")
    if run in ("stream", "whole"):

        def warm_up(sentences):
            evaluation.translate(model, tokenizer, sentences)

    if run == "stream":

        def translate(source, lines, window, output):
            started = time.perf_counter()
            fingerprint = evaluation.sentences_fingerprint(files.iter_lines(source))
            read = time.perf_counter()
            window_ends = []
            sentences = marking_window_ends(first_lines(source, lines), window, window_ends)
            evaluation.translate_file(model, tokenizer, sentences, output, source=fingerprint, window=window)
            # A single window reaches the file at the end.
            return {"read_seconds": read - started, "first_output_at": (window_ends or [time.perf_counter()])[0]}

        return warm_up, translate
    if run == "whole":

        def translate(source, lines, window, output):
            started = time.perf_counter()
            sentences = files.read_lines(source)
            # `translate` of the whole file holds every line's token ids while it decodes; only the first `lines` are
            # decoded here, so the others' ids are held beside them.
            held = evaluation.encode_sentences(
                sentences[lines:], tokenizer, getattr(model.config, "max_position_embeddings", None)
            )
            read = time.perf_counter()
            hypotheses = evaluation.translate(model, tokenizer, sentences[:lines])
            files.write_atomic(output, "".join(hypothesis + "\n" for hypothesis in hypotheses))
            del held
            return {"read_seconds": read - started, "first_output_at": time.perf_counter()}

        return warm_up, translate
    from ..export.ctranslate2 import CTranslate2Translator, convert_to_ctranslate2

    converted = Path(scratch) / "ct2"
    convert_to_ctranslate2(model, converted, tokenizer=tokenizer)
    translator = CTranslate2Translator(converted, tokenizer, intra_threads=torch.get_num_threads())

    def warm_up(sentences):
        translator.translate(sentences, **BEAM, max_batch_size=CTRANSLATE2_MAX_TOKENS, batch_type="tokens")

    def translate(source, lines, window, output):
        first_output_at = None
        with open(output, "w", encoding="utf-8") as file:
            for sentences in evaluation.sentence_windows(first_lines(source, lines), window):
                hypotheses = translator.translate(
                    sentences, **BEAM, max_batch_size=CTRANSLATE2_MAX_TOKENS, batch_type="tokens"
                )
                file.write("".join(hypothesis + "\n" for hypothesis in hypotheses))
                file.flush()
                first_output_at = first_output_at or time.perf_counter()
        return {"read_seconds": 0.0, "first_output_at": first_output_at}

    return warm_up, translate


def worker(run: str, model_dir: str, source: str, lines: int, window: int, output: str, result_path: str) -> None:
    """Measures one run (see the module) and writes its figures to `result_path`, its translations to `output`."""
    import torch

    from ..analysis.layer_comparison import peak_memory

    source, output = Path(source), Path(output)
    with tempfile.TemporaryDirectory() as scratch:
        warm_up, translate = prepare(run, model_dir, scratch)
        # Allocators, kernels, the first call's one-off costs; in memory, so that no file-sized buffer is left behind.
        warm_up(list(first_lines(source, 16)))
        result = {}

        def measured():
            started = time.perf_counter()
            result.update(translate(source, lines, window, output))
            result["seconds"] = time.perf_counter() - started
            result["first_output_seconds"] = result.pop("first_output_at") - started

        peak = peak_memory(measured, torch.device("cpu"))
    result.update(run=run, threads=torch.get_num_threads(), peak_mib=None if peak is None else peak / 2**20)
    Path(result_path).write_text(json.dumps(result))


def translate_file_worker(model_dir: str, source: str, window: int, output: str, result_path: str) -> None:
    """`translate_file` of the whole of `source` into `output`, as `vaswani-translate --input --output` runs it, for
    the resume check; writes the lines it kept from an interrupted run to `result_path`."""
    from .. import evaluation

    model, tokenizer, _ = evaluation.load_model(model_dir, device="cpu")
    fingerprint = evaluation.sentences_fingerprint(files.iter_lines(source))
    kept = evaluation.translate_file(
        model, tokenizer, files.iter_lines(source), output, source=fingerprint, window=window
    )
    Path(result_path).write_text(json.dumps({"kept": kept}))


# ---------------------------------------------------------------------------------------------------------------------
# All runs, the resume check, and the report
# ---------------------------------------------------------------------------------------------------------------------
def worker_command(*args) -> list[str]:
    # This module's --worker, whichever script started the benchmark.
    return [sys.executable, "-m", WORKER, *map(str, args)]


def measure(run: str, model_dir: str, source: Path, lines: int, window: int, output: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result_path = Path(scratch) / "result.json"
        command = worker_command(model_dir, "--worker", run, "--source", source, "--lines", lines)
        command += ["--window", str(window), "--translations", str(output), "--result", str(result_path)]
        subprocess.run(command, check=True)
        return json.loads(result_path.read_text())


def resume_check(model_dir: str, source: Path, lines: int, window: int, scratch: Path) -> dict:
    """Kills `translate_file` after two windows, runs it again, and compares its output with an uninterrupted run's
    (see the module)."""
    part = scratch / "resume-source.txt"
    part.write_text("".join(line + "\n" for line in first_lines(source, lines)), encoding="utf-8")
    reference, output = scratch / "resume-uninterrupted.txt", scratch / "resume-killed.txt"
    record = output.with_name(output.name + ".partial.json")

    def command(translations: Path, result: Path) -> list[str]:
        command = worker_command(model_dir, "--worker", "translate-file", "--source", part, "--window", window)
        return [*command, "--translations", str(translations), "--result", str(result)]

    def lines_written() -> int:
        try:
            return json.loads(record.read_text())["lines"]
        except FileNotFoundError:  # not begun yet, or finished
            return 0

    # The uninterrupted run and the one to be killed side by side, since only their outputs are compared: one thread
    # each, as two processes each spinning a thread per core slow each other down many times over. The second run
    # takes one thread too: the thread count decides the rounding, and so, at a near tie, a translation.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    uninterrupted = subprocess.Popen(command(reference, scratch / "resume-uninterrupted.json"), env=env)
    killed = subprocess.Popen(command(output, scratch / "resume-killed.json"), env=env)
    while killed.poll() is None:
        if lines_written() >= 2 * window:
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    if killed.wait() not in (0, -signal.SIGKILL):
        raise RuntimeError("the run of the resume check to be killed failed before the kill")
    finished_before_the_kill = killed.returncode == 0
    killed_after = None if finished_before_the_kill else lines_written()
    subprocess.run(command(output, scratch / "resume-second.json"), env=env, check=True)
    if uninterrupted.wait() != 0:
        raise RuntimeError("the uninterrupted run of the resume check failed")
    kept = json.loads((scratch / "resume-second.json").read_text())["kept"]
    return {
        "lines": lines,
        "window": window,
        "signal": "SIGKILL",
        "killed_after_lines": killed_after,
        "finished_before_the_kill": finished_before_the_kill,
        "lines_kept_by_second_run": kept,
        "lines_translated_by_second_run": lines - kept,
        "identical_to_uninterrupted": output.read_bytes() == reference.read_bytes(),
    }


def identical_lines(path: Path, other: Path) -> int:
    return sum(a == b for a, b in zip(files.iter_lines(path), files.iter_lines(other), strict=True))


def row(result: dict, lines: int, identical: int | None) -> dict:
    translating = result["seconds"] - result["read_seconds"]
    return {
        "run": result["run"],
        "lines": lines,
        "read_seconds": result["read_seconds"],
        "seconds": result["seconds"],
        "sentences_per_s": lines / translating,
        "first_output_seconds": result["first_output_seconds"],
        "peak_mib": result["peak_mib"],
        "identical_to_stream": identical,
        "threads": result["threads"],
    }


def markdown(data: dict) -> str:
    lines = [
        f"Source: {data['file_lines']:,} lines ({data['file_mib']:.0f} MiB), the first {data['lines']:,} translated, "
        f"windows of {data['window']:,} lines.\n",
        "| run | lines | reading s | total s | sentences/s | first output s | peak MiB | identical to stream |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in data["rows"]:
        peak = f"{entry['peak_mib']:,.0f}" if entry["peak_mib"] is not None else "-"
        same = "-" if entry["identical_to_stream"] is None else f"{entry['identical_to_stream']:,}"
        lines.append(
            f"| {entry['run']} | {entry['lines']:,} | {entry['read_seconds']:.1f} | {entry['seconds']:.1f} | "
            f"{entry['sentences_per_s']:.1f} | {entry['first_output_seconds']:.1f} | {peak} | {same} |"
        )
    for run, why in data["skipped"].items():
        lines.append(f"\n{run}: not run ({why})")
    resume = data.get("resume")
    if resume is not None:
        killed = (
            "finished before the kill"
            if resume["finished_before_the_kill"]
            else f"killed ({resume['signal']}) after {resume['killed_after_lines']:,} lines"
        )
        same = "identical to" if resume["identical_to_uninterrupted"] else "DIFFERENT from"
        lines.append(
            f"\nResume check: {resume['lines']:,} lines in windows of {resume['window']:,}, {killed}; the second run "
            f"translated {resume['lines_translated_by_second_run']:,} lines; the output is {same} an uninterrupted "
            "run's."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a saved model and its tokenizer")
    parser.add_argument("--test", help="a parallel en-de file whose English is repeated (default: built-in test_help)")
    parser.add_argument(
        "--file-lines", type=int, default=FILE_LINES, help=f"lines of the source (default: {FILE_LINES:,})"
    )
    parser.add_argument("--lines", type=int, help="translate only the first LINES lines (default: all)")
    parser.add_argument(
        "--window", type=int, default=DEFAULT_WINDOW, help=f"lines per window (default: {DEFAULT_WINDOW:,})"
    )
    parser.add_argument("--runs", nargs="+", choices=RUNS, help="default: all (ctranslate2 when installed)")
    parser.add_argument(
        "--resume-lines", type=int, default=RESUME_LINES, help=f"default: {RESUME_LINES:,}; 0: no check"
    )
    parser.add_argument("--resume-window", type=int, default=RESUME_WINDOW, help=f"default: {RESUME_WINDOW}")
    parser.add_argument("--output", help="JSON file for the figures")
    parser.add_argument("--markdown", help="Markdown file for the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--translations", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("file_lines", "lines", "window", "resume_window"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.worker == "translate-file":
        translate_file_worker(args.model_dir, args.source, args.window, args.translations, args.result)
        return 0
    if args.worker:
        from ..training.memory import keep_freed_memory

        keep_freed_memory()
        worker(args.worker, args.model_dir, args.source, args.lines, args.window, args.translations, args.result)
        return 0

    installed = importlib.util.find_spec("ctranslate2") is not None
    runs = args.runs or [run for run in RUNS if run != "ctranslate2" or installed]
    if "ctranslate2" in runs and not installed:
        parser.error("the ctranslate2 run needs CTranslate2: pip install 'vaswani_hf[ctranslate2]'")
    lines = args.file_lines if args.lines is None else min(args.lines, args.file_lines)
    sources, _ = load_test_set(args.test)
    data = {
        "model_dir": args.model_dir,
        "test": args.test or "built-in test_help",
        "distinct_sentences": len(sources),
        "file_lines": args.file_lines,
        "lines": lines,
        "window": args.window,
        "rows": [],
        "skipped": {} if installed or args.runs else {"ctranslate2": "CTranslate2 is not installed"},
    }
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        source = scratch / "source.txt"
        build_source_file(source, sources, args.file_lines)
        data["file_mib"] = source.stat().st_size / 2**20
        outputs = {}
        for run in runs:
            print(f"== {run}: {lines:,} of {args.file_lines:,} lines", flush=True)
            outputs[run] = scratch / f"{run}.txt"
            result = measure(run, args.model_dir, source, lines, args.window, outputs[run])
            identical = identical_lines(outputs[run], outputs["stream"]) if "stream" in outputs else None
            data["rows"].append(row(result, lines, identical))
            print(f"   {result['seconds']:.1f} s", flush=True)
        if args.resume_lines:
            resume_lines = min(args.resume_lines, args.file_lines)
            print(f"== resume check: {resume_lines:,} lines", flush=True)
            data["resume"] = resume_check(args.model_dir, source, resume_lines, args.resume_window, scratch)
    data["provenance"] = provenance([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    table = markdown(data)
    print(table)
    if args.output:
        files.write_atomic(args.output, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if args.markdown:
        files.write_atomic(args.markdown, table)
    return 0


if __name__ == "__main__":  # the worker processes of `measure`; users run scripts/benchmark_streaming.py
    raise SystemExit(main())
