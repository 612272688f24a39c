"""Translate a test set with a saved model and score it with detokenized sacreBLEU and chrF.

    vaswani-evaluate MODEL_DIR --src newstest2014.en --ref newstest2014.de --output-dir results
    vaswani-evaluate MODEL_DIR --dataset wmt14_saved --split test --src-lang en --tgt-lang de
    vaswani-evaluate --copy-baseline --src newstest2014.en --ref newstest2014.de

Decoding is the model's generation config (the paper's beam 4, length penalty 0.6, at most source length + 50
tokens) unless an option overrides it. Writes `hypotheses.txt` (one line per source) and `scores.json` to `--output-dir`
and prints one summary line. `--copy-baseline` scores the sources themselves as hypotheses, without a model.

The sources are translated as `vaswani-translate --output` does: window by window into `hypotheses.txt.partial`,
which becomes `hypotheses.txt` after the last window. An interrupted evaluation is continued by running the same
command again; it refuses, saying what differs, when the test set, the model or the decoding options changed, and
`--restart` starts it from the first sentence. Scoring then reads the finished `hypotheses.txt` back: corpus BLEU
and chrF count n-gram statistics over all hypotheses and references together, so they are held in memory for it.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from transformers.utils import logging as transformers_logging

# Importing the package also registers its model with the Auto classes used below.
from vaswani_hf import evaluation, files
from vaswani_hf.cli.options import add_translation_options, decoding_overrides, warn_renamed
from vaswani_hf.data.parallel import load_parallel
from vaswani_hf.errors import user_errors
from vaswani_hf.provenance import provenance


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?", help="folder of a saved model and its tokenizer")
    parser.add_argument("--copy-baseline", action="store_true", help="score the sources as hypotheses, no model")
    data = parser.add_argument_group("test set: --src and --ref files, or --dataset")
    data.add_argument("--src", help="source sentences, one per line (UTF-8)")
    data.add_argument("--ref", nargs="+", metavar="FILE", help="reference file(s), one sentence per line, parallel")
    data.add_argument(
        "--dataset",
        help="a parallel test set in any form vaswani_hf.data.parallel.load_parallel reads: a folder written by "
        "save_to_disk, a .jsonl or .tsv file, a prefix of aligned text files, hub:NAME[:CONFIG]",
    )
    data.add_argument("--split", default="test", help="split of a DatasetDict --dataset (default: test)")
    data.add_argument("--src-lang", help="source language key of --dataset (of its `translation` column)")
    data.add_argument("--tgt-lang", help="target language key of --dataset")
    parser.add_argument(
        "--output-dir",
        "--out-dir",
        dest="out_dir",
        default=".",
        help="where to write hypotheses.txt and scores.json (default: .; --out-dir is its deprecated spelling)",
    )
    add_translation_options(parser)
    metric = parser.add_argument_group("metric")
    metric.add_argument("--tokenize", help="sacrebleu BLEU tokenizer (default: 13a)")
    metric.add_argument("--lowercase", action="store_true", help="case-insensitive BLEU and chrF")
    args = parser.parse_args(argv)
    warn_renamed(argv, {"--out-dir": "--output-dir"})

    if args.copy_baseline == (args.model_dir is not None):
        parser.error("give either MODEL_DIR or --copy-baseline")
    if (args.dataset is None) == (args.src is None and args.ref is None):
        parser.error("give the test set either as --src and --ref files or as --dataset")
    if args.dataset is None and (args.src is None or args.ref is None):
        parser.error("--src and --ref go together")
    if args.dataset is not None and (args.src_lang is None or args.tgt_lang is None):
        parser.error("--dataset needs --src-lang and --tgt-lang, the keys of its `translation` column")
    return args


def load_test_set(args) -> tuple[list[str], list[str] | list[list[str]]]:
    if args.dataset is not None:
        try:
            pairs = load_parallel(args.dataset, src_lang=args.src_lang, tgt_lang=args.tgt_lang, split=args.split)
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"error: {error}")
        pairs = pairs["translation"]
        return [pair[args.src_lang] for pair in pairs], [pair[args.tgt_lang] for pair in pairs]
    try:
        sources = files.read_lines(args.src)
        streams = [files.read_lines(path) for path in args.ref]
    except (OSError, ValueError) as error:  # missing, a folder, not UTF-8
        sys.exit(f"error: {error}")
    for path, stream in zip(args.ref, streams, strict=True):
        if len(stream) != len(sources):
            sys.exit(f"error: {args.src} has {len(sources)} lines but {path} has {len(stream)}; they must be parallel")
    # One reference per sentence as a str, several as a list per sentence.
    references = streams[0] if len(streams) == 1 else [list(refs) for refs in zip(*streams, strict=True)]
    return sources, references


@user_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    try:
        files.check_output_dir(out_dir)
    except ValueError as error:
        sys.exit(f"error: {error}")
    sources, references = load_test_set(args)
    if not sources:
        sys.exit("error: the test set is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"test_set": args.dataset or args.src, "split": args.split if args.dataset else None}

    hypotheses_path = out_dir / "hypotheses.txt"
    start = time.perf_counter()
    if args.copy_baseline:
        hypotheses = sources
        files.write_atomic(hypotheses_path, "".join(line + "\n" for line in hypotheses))
        report.update(model=None, decoding="copy the source")
    else:
        if args.no_progress:
            transformers_logging.disable_progress_bar()
        try:
            model, tokenizer, device = evaluation.load_model(args.model_dir, device=args.device, dtype=args.dtype)
        except (OSError, ValueError) as error:  # no model at MODEL_DIR, none on the Hub, or damaged weights
            sys.exit(f"error: {error}")
        generate_kwargs = decoding_overrides(args)
        try:
            kept = evaluation.translate_file(
                model,
                tokenizer,
                sources,
                hypotheses_path,
                source=evaluation.sentences_fingerprint(sources),
                restart=args.restart,
                window=args.window,
                max_tokens=args.max_tokens,
                show_progress=not args.no_progress,
                **generate_kwargs,
            )
        # An option the model cannot honour (found before any sentence is decoded), or the unfinished output of
        # another run.
        except (ValueError, FileExistsError) as error:
            sys.exit(f"error: {error}")
        hypotheses = files.read_lines(hypotheses_path)
        report.update(
            model=args.model_dir,
            decoding=evaluation.decoding_settings(model, generate_kwargs),
            max_tokens=args.max_tokens,
            device=device,
            dtype=args.dtype,
            # Translated by an interrupted run, whose time `seconds` does not count.
            lines_from_interrupted_run=kept,
        )
    seconds = time.perf_counter() - start

    scores = evaluation.score(hypotheses, references, tokenize=args.tokenize, lowercase=args.lowercase)
    report = {**scores, "num_sentences": len(sources), **report, "seconds": round(seconds, 3)}
    report["provenance"] = provenance()
    files.write_atomic(out_dir / "scores.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(
        f"BLEU {scores['bleu']:.2f}  chrF {scores['chrf']:.2f}  {len(sources)} sentences  {seconds:.1f} s  "
        f"-> {out_dir / 'scores.json'}  ({scores['bleu_signature']})"
    )


if __name__ == "__main__":
    main()
