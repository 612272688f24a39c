"""The main job: the whole recipe on the built-in corpus, on a CPU, in six stages.

1. the default corpus (LibreOffice help and Ding example sentences, English-German);
2. the tokenizer and `minutes` of training by the small-cpu preset, run as `vaswani-train` runs it, in processes of
   its own (`vaswani_hf.training.launch`); a stopped job continues from its last checkpoint when started again;
3. test BLEU and chrF of the averaged model with the paper's decoding (§6.1: beam 4, length penalty 0.6, at most input
   + 50 tokens), beside the copy baseline;
4. a BLEU-over-training-time curve: every kept checkpoint on its own (`vaswani_hf.training.learning_curve`), drawn
   to `bleu_curve.png`;
5. a few translations;
6. the model card, `model/README.md`, what `vaswani-push` uploads.

`results.json` in the run folder holds the scores, the curve and the translations beside the run's provenance.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from ..analysis.plotting import new_figure, plot_points, save_png
from ..data.default_corpus import default_corpus_record, load_default_corpus
from ..evaluation import score, translate
from ..export.model_card import make_model_card
from ..files import write_atomic
from ..provenance import provenance
from ..run_dir import RunDir
from ..training.launch import run_training
from ..training.learning_curve import learning_curve

TEST_SPLITS = ("test_help", "test_dictionary")
EXAMPLES = [
    "Click the Save button to save the document.",
    "Select the cells that you want to format.",
    "The function returns the sum of all numbers in the list.",
    "I would like a cup of coffee, please.",
    "He is very tired after the long journey.",
]
# The training processes write to the same terminal: each line goes out before they start.
_print = functools.partial(print, flush=True)
MINUTES = 20.0
# Two single-threaded processes train fastest on a 2-core CPU (`run_training`).
PROCESSES = min(2, os.cpu_count() or 1)


def run_main_job(
    output_dir: str | Path,
    minutes: float = MINUTES,
    processes: int = PROCESSES,
    curve: bool = True,
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = _print,
) -> dict:
    """Runs the stages of the module docstring into `output_dir` (`curve=False` skips the curve), `overrides`
    (`section.key=value`) applied to the run config after the job's own, and returns the results, which are also
    written to `results.json`. `log` gets each line of progress."""
    run = RunDir(output_dir)
    out = run.root
    started = time.monotonic()

    log("== 1. Default corpus (LibreOffice help + Ding example sentences, English-German)")
    corpus = load_default_corpus()
    for split, rows in corpus.items():
        log(f"   {split}: {len(rows)} pairs")

    log(f"== 2. Tokenizer and {minutes:g} minutes of training (vaswani-train --config small-cpu)")
    if run.is_finished():
        log(f"   {out} holds a finished run; delete it to train again")
    else:
        run_training(
            processes, ["--config", "small-cpu", *run.train_arguments(), f"train.max_minutes={minutes}", *overrides]
        )
    summary = run.read_json(run.train_summary)
    log(f"   {summary['updates']} updates, {summary['epochs']:.2f} epochs, {summary['train_minutes']:.1f} minutes")

    log("== 3. Test BLEU and chrF (beam 4, length penalty 0.6, max length input + 50)")
    model = AutoModelForSeq2SeqLM.from_pretrained(run.model)
    tokenizer = AutoTokenizer.from_pretrained(run.model)
    results = {
        "provenance": provenance(),
        "corpus": default_corpus_record(),
        "train": summary,
        "test": {},
        "copy_baseline": {},
    }
    for split in TEST_SPLITS:
        sources, references = _pairs(corpus[split])
        t = time.monotonic()
        hypotheses = translate(model, tokenizer, sources, show_progress=True)
        scores = score(hypotheses, references)
        scores["seconds"] = time.monotonic() - t
        write_atomic(run.eval(split) / "hypotheses.txt", "".join(h + "\n" for h in hypotheses))
        results["test"][split] = scores
        results["copy_baseline"][split] = score(sources, references)
        log(
            f"   {split}: BLEU {scores['bleu']:.1f} chrF {scores['chrf']:.1f} "
            f"(copying the source: BLEU {results['copy_baseline'][split]['bleu']:.1f} "
            f"chrF {results['copy_baseline'][split]['chrf']:.1f})"
        )
    log(f"   {results['test'][TEST_SPLITS[0]]['bleu_signature']}")

    if curve:
        log("== 4. BLEU on test_help against training minutes (each kept checkpoint, same decoding)")
        results["curve"] = learning_curve(
            run,
            tokenizer,
            *_pairs(corpus["test_help"]),
            on_point=lambda p: log(f"   {p['minutes']:5.1f} min  update {p['updates']:5d}  BLEU {p['bleu']:5.1f}"),
        )
        plot_bleu_curve(results, out / "bleu_curve.png", log=log)

    log("== 5. Translations")
    results["examples"] = dict(zip(EXAMPLES, translate(model, tokenizer, EXAMPLES), strict=True))
    for source, hypothesis in results["examples"].items():
        log(f"   {source}\n   -> {hypothesis}")

    results["wall_minutes"] = (time.monotonic() - started) / 60
    run.write_json(run.results, results)

    log("== 6. Model card")
    _, notes = make_model_card(run.model, out, run.model / "README.md")
    for note in notes:
        log(f"   note: {note}")
    log(f"== Model and its card in {run.model}, scores in {run.results} ({results['wall_minutes']:.1f} min)")
    return results


def _pairs(split) -> tuple[list[str], list[str]]:
    """The English sources and German references of a split of the default corpus."""
    return [p["en"] for p in split["translation"]], [p["de"] for p in split["translation"]]


def plot_bleu_curve(results: dict, path: Path, log: Callable[[str], None] = _print) -> None:
    """BLEU and chrF of each checkpoint against training minutes, with the averaged model and the copy baseline;
    without matplotlib, `log` says what to install instead."""
    try:
        figure = new_figure(figsize=(6, 4), dpi=120)
    except ImportError as error:
        log(f"   no {path.name}: {error}")
        return
    axis = figure.subplots()
    plot_points(axis, results["curve"], "minutes", "bleu", "o-", label="BLEU, single checkpoint")
    plot_points(axis, results["curve"], "minutes", "chrf", "s--", alpha=0.6, label="chrF, single checkpoint")
    final = results["test"]["test_help"]
    axis.plot([results["train"]["train_minutes"]], [final["bleu"]], "r*", markersize=12, label="BLEU, averaged")
    axis.axhline(results["copy_baseline"]["test_help"]["bleu"], color="gray", linestyle=":", label="BLEU, copy source")
    axis.set_xlabel("training minutes (2-core CPU)")
    axis.set_ylabel("score on test_help")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    save_png(figure, path)
    log(f"   drew {path}")
