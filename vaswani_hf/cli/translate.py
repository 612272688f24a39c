"""Translate lines of text with a saved model, one output line per input line.

    vaswani-translate MODEL_DIR --input newstest2014.en --output hypotheses.de
    echo "the house is small" | vaswani-translate MODEL_DIR --no-progress

Reads UTF-8 lines from --input (default: stdin) and writes their translations to --output (default: stdout); an
empty input line gives an empty output line at the same position. Decoding is the model's generation config (the
paper's beam 4, length penalty 0.6, at most source length + 50 tokens) unless an option overrides it.
"""

import argparse
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
    return parser.parse_args(argv)


@user_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        if args.output is not None:
            files.check_output_file(args.output)
    except ValueError as error:
        sys.exit(f"error: {error}")
    # Standard input through its file descriptor, read as a file is: the locale's encoding of sys.stdin need not be
    # UTF-8, and its universal newlines would end a line at a lone "\r".
    try:
        sentences = files.read_lines(sys.stdin.fileno() if args.input is None else args.input)
    except (OSError, ValueError) as error:  # missing, a folder, not UTF-8
        sys.exit(f"error: {error}")

    if args.no_progress:
        transformers_logging.disable_progress_bar()
    try:
        model, tokenizer, _ = evaluation.load_model(args.model_dir, device=args.device, dtype=args.dtype)
    except (OSError, ValueError) as error:  # no model at MODEL_DIR, none on the Hub, or damaged weights
        sys.exit(f"error: {error}")
    try:
        hypotheses = evaluation.translate(
            model,
            tokenizer,
            sentences,
            max_tokens=args.max_tokens,
            show_progress=not args.no_progress,
            **decoding_overrides(args),
        )
    except ValueError as error:  # an option the model cannot honour, found before any sentence is decoded
        sys.exit(f"error: {error}")

    text = "".join(line + "\n" for line in hypotheses)
    if args.output is None:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
    else:
        files.write_atomic(args.output, text)


if __name__ == "__main__":
    main()
