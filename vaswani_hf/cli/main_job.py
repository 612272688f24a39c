"""The whole recipe on the built-in corpus, on a CPU: data, tokenizer, 20 minutes of training, checkpoint averaging,
test BLEU/chrF with the paper's decoding, a BLEU-over-training-time curve, a few translations, and the model card
(`model/README.md`, what `vaswani-push` uploads).

    vaswani-main-job                        # writes outputs/main-job/
    vaswani-main-job --minutes 5 --output-dir outputs/quick

Training runs `vaswani-train --config small-cpu` in its own process, exactly as a user would; a killed main job
continues from its last checkpoint when started again. `bash scripts/main_job.sh` also installs what it needs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from vaswani_hf.cli.errors import user_errors
from vaswani_hf.data.default_corpus import default_corpus_record, load_default_corpus
from vaswani_hf.evaluation import score, translate
from vaswani_hf.export.model_card import make_model_card
from vaswani_hf.files import write_atomic
from vaswani_hf.provenance import provenance
from vaswani_hf.run_dir import RunDir
from vaswani_hf.training.checkpoints import CheckpointManager, averaged_model, checkpoint_state
from vaswani_hf.training.launch import run_training

TEST_SPLITS = ("test_help", "test_dictionary")
EXAMPLES = [
    "Click the Save button to save the document.",
    "Select the cells that you want to format.",
    "The function returns the sum of all numbers in the list.",
    "I would like a cup of coffee, please.",
    "He is very tired after the long journey.",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/main-job")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget in minutes (default: 20)")
    parser.add_argument(
        "--processes", type=int, default=min(2, os.cpu_count() or 1), help="training processes (default: 2)"
    )
    parser.add_argument("--no-curve", action="store_true", help="skip scoring every checkpoint on test_help")
    parser.add_argument("overrides", nargs="*", help="extra run-config overrides for train.py (section.key=value)")
    return parser.parse_args(argv)


@user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    run = RunDir(args.output_dir)
    out = run.root
    started = time.monotonic()

    print("== 1. Default corpus (LibreOffice help + Ding example sentences, English-German)", flush=True)
    corpus = load_default_corpus()
    for split, rows in corpus.items():
        print(f"   {split}: {len(rows)} pairs")

    print(f"== 2. Tokenizer and {args.minutes:g} minutes of training (vaswani-train --config small-cpu)", flush=True)
    if run.is_finished():
        print(f"   {out} holds a finished run; delete it to train again")
    else:
        run_training(
            args.processes,
            ["--config", "small-cpu", *run.train_arguments(), f"train.max_minutes={args.minutes}", *args.overrides],
        )
    summary = run.read_json(run.train_summary)
    print(f"   {summary['updates']} updates, {summary['epochs']:.2f} epochs, {summary['train_minutes']:.1f} minutes")

    print("== 3. Test BLEU and chrF (beam 4, length penalty 0.6, max length input + 50)", flush=True)
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
        sources = [p["en"] for p in corpus[split]["translation"]]
        references = [p["de"] for p in corpus[split]["translation"]]
        t = time.monotonic()
        hypotheses = translate(model, tokenizer, sources, show_progress=True)
        scores = score(hypotheses, references)
        scores["seconds"] = time.monotonic() - t
        write_atomic(run.eval(split) / "hypotheses.txt", "".join(h + "\n" for h in hypotheses))
        results["test"][split] = scores
        results["copy_baseline"][split] = score(sources, references)
        print(
            f"   {split}: BLEU {scores['bleu']:.1f} chrF {scores['chrf']:.1f} "
            f"(copying the source: BLEU {results['copy_baseline'][split]['bleu']:.1f} "
            f"chrF {results['copy_baseline'][split]['chrf']:.1f})"
        )
    print(f"   {results['test'][TEST_SPLITS[0]]['bleu_signature']}")

    if not args.no_curve:
        print("== 4. BLEU on test_help against training minutes (each kept checkpoint, same decoding)", flush=True)
        results["curve"] = bleu_curve(run, tokenizer, corpus["test_help"])
        for point in results["curve"]:
            print(f"   {point['minutes']:5.1f} min  update {point['updates']:5d}  BLEU {point['bleu']:5.1f}")
        plot_curve(results, out / "bleu_curve.png")

    print("== 5. Translations", flush=True)
    results["examples"] = dict(zip(EXAMPLES, translate(model, tokenizer, EXAMPLES), strict=True))
    for source, hypothesis in results["examples"].items():
        print(f"   {source}\n   -> {hypothesis}")

    results["wall_minutes"] = (time.monotonic() - started) / 60
    run.write_json(run.results, results)

    print("== 6. Model card", flush=True)
    _, notes = make_model_card(run.model, out, run.model / "README.md")
    for note in notes:
        print(f"   note: {note}")
    print(f"== Model and its card in {run.model}, scores in {run.results} ({results['wall_minutes']:.1f} min)")
    return 0


def bleu_curve(run: RunDir, tokenizer, test_split) -> list[dict]:
    """Test BLEU of every kept checkpoint (each on its own, not averaged) with the minutes of training behind it."""
    sources = [p["en"] for p in test_split["translation"]]
    references = [p["de"] for p in test_split["translation"]]
    points = []
    for checkpoint in CheckpointManager(run.checkpoints, keep=1).checkpoints():
        state = checkpoint_state(checkpoint)
        model = averaged_model([checkpoint], run.model_config)
        scores = score(translate(model, tokenizer, sources), references)
        points.append(
            {"checkpoint": checkpoint.name, "updates": state["step"], "minutes": state["train_seconds"] / 60}
            | {k: scores[k] for k in ("bleu", "chrf")}
        )
    return points


def plot_curve(results: dict, path: Path) -> None:
    """BLEU and chrF of each checkpoint against training minutes, with the averaged model and the copy baseline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("   (matplotlib is not installed: pip install matplotlib to draw bleu_curve.png)")
        return
    curve = results["curve"]
    minutes = [p["minutes"] for p in curve]
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    axis.plot(minutes, [p["bleu"] for p in curve], "o-", label="BLEU, single checkpoint")
    axis.plot(minutes, [p["chrf"] for p in curve], "s--", alpha=0.6, label="chrF, single checkpoint")
    final = results["test"]["test_help"]
    axis.plot([results["train"]["train_minutes"]], [final["bleu"]], "r*", markersize=12, label="BLEU, averaged")
    axis.axhline(results["copy_baseline"]["test_help"]["bleu"], color="gray", linestyle=":", label="BLEU, copy source")
    axis.set_xlabel("training minutes (2-core CPU)")
    axis.set_ylabel("score on test_help")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    figure.savefig(tmp, format="png")
    tmp.replace(path)
    print(f"   drew {path}")


if __name__ == "__main__":
    raise SystemExit(main())
