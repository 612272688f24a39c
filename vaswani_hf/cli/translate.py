"""Translate lines of text with a saved model, one output line per input line.

    vaswani-translate MODEL_DIR --input newstest2014.en --output hypotheses.de
    echo "the house is small" | vaswani-translate MODEL_DIR --no-progress

Reads UTF-8 lines from --input (default: stdin) and writes their translations to --output (default: stdout); an
empty input line gives an empty output line at the same position. Decoding is the model's generation config (the
paper's beam 4, length penalty 0.6, at most source length + 50 tokens) unless an option overrides it.

The input is translated in windows of --window lines (10,000 by default), each sorted by length into batches, and
each window's translations are written as soon as it is done: memory stays that of one window, whatever the size of
the input. To standard output, they appear window by window. To --output, they go to OUTPUT.partial, with a progress
record OUTPUT.partial.json, and OUTPUT appears, whole, after the last window (replacing an earlier OUTPUT).

An interrupted run (Ctrl-C, a kill, a crash, a full disk) is continued by running the same command again: it goes on
after the last window written, without translating those lines again. It refuses, saying what differs, when the
input, the model's weights or dtype, or the decoding options are not those of the interrupted run; --restart
discards the unfinished file and starts from the first line. --max-tokens, --window and --device may change between
the runs. Standard input (or a pipe) cannot be read again to check it, so a run from it starts afresh, and what goes
to standard output is never resumed. An --input file is read once before translating, to count its lines, check that
it is UTF-8 and fingerprint it (a second or so per million lines).
"""

import argparse
import os
import stat
import sys

from transformers.utils import logging as transformers_logging

# Importing the package also registers its model with the Auto classes used below.
from vaswani_hf import evaluation, files
from vaswani_hf.cli.options import add_translation_options, decoding_overrides
from vaswani_hf.errors import user_errors


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder of a saved model and its tokenizer")
    parser.add_argument("--input", help="file of sentences, one per line (default: stdin)")
    parser.add_argument("--output", help="file for the translations (default: stdout)")
    add_translation_options(parser)
    args = parser.parse_args(argv)
    if args.restart and args.output is None:
        parser.error("--restart goes with --output: translations to standard output are never resumed")
    return args


def fingerprint_input(path: str | None) -> dict | None:
    """`evaluation.sentences_fingerprint` of the --input file, None for standard input, a pipe or a terminal, which
    cannot be read twice."""
    if path is None:
        return None
    mode = os.stat(path).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
        return None
    return evaluation.sentences_fingerprint(files.iter_lines(path))


@user_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        if args.output is not None:
            files.check_output_file(args.output)
        source = fingerprint_input(args.input)
    except (OSError, ValueError) as error:  # an unusable output; an input missing, a folder, not UTF-8
        sys.exit(f"error: {error}")

    if args.no_progress:
        transformers_logging.disable_progress_bar()
    try:
        model, tokenizer, _ = evaluation.load_model(args.model_dir, device=args.device, dtype=args.dtype)
    except (OSError, ValueError) as error:  # no model at MODEL_DIR, none on the Hub, or damaged weights
        sys.exit(f"error: {error}")
    # Standard input through its file descriptor, read as a file is: the locale's encoding of sys.stdin need not be
    # UTF-8, and its universal newlines would end a line at a lone "\r".
    sentences = files.iter_lines(sys.stdin.fileno() if args.input is None else args.input)
    options = dict(
        window=args.window, max_tokens=args.max_tokens, show_progress=not args.no_progress, **decoding_overrides(args)
    )
    try:
        if args.output is not None:
            evaluation.translate_file(
                model, tokenizer, sentences, args.output, source=source, restart=args.restart, **options
            )
            return
        windows = evaluation.translate_stream(
            model, tokenizer, sentences, total=None if source is None else source["lines"], **options
        )
        for hypotheses in windows:
            sys.stdout.buffer.write("".join(line + "\n" for line in hypotheses).encode("utf-8"))
            sys.stdout.buffer.flush()
    # An option the model cannot honour (found before any sentence is decoded), a line of standard input that is not
    # UTF-8, or the unfinished output of another run.
    except (ValueError, FileExistsError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
