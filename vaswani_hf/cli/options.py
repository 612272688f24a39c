"""Options that several commands share, defined once."""

import argparse
import sys

from vaswani_hf.evaluation import DEFAULT_MAX_TOKENS, DEFAULT_WINDOW, DTYPES


def add_translation_options(parser: argparse.ArgumentParser) -> None:
    """Batching, resuming, device, precision, progress and decoding overrides, for the commands that translate."""
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help="tokens per batch, each sentence counted at its output limit (source length + 50 by default): the peak "
        f"memory of decoding grows with it (default: {DEFAULT_MAX_TOKENS:,}; docs/speed.md measures what each setting "
        "costs)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        help="lines read, sorted by length and translated together; each window's translations are written as soon "
        f"as it is done (default: {DEFAULT_WINDOW:,})",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard the unfinished output an interrupted run left (the .partial file beside the output, and its "
        ".partial.json record) and translate from the first line",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32", help="weights (default: fp32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    decoding = parser.add_argument_group("decoding overrides (default: the model's generation config)")
    decoding.add_argument("--num-beams", type=int)
    decoding.add_argument("--length-penalty", type=float)
    decoding.add_argument("--max-new-tokens", type=int, help="a fixed output limit instead of source length + 50")


def decoding_overrides(args: argparse.Namespace) -> dict:
    """The decoding overrides given on the command line, as `generate()` keyword arguments."""
    given = dict(num_beams=args.num_beams, length_penalty=args.length_penalty, max_new_tokens=args.max_new_tokens)
    return {key: value for key, value in given.items() if value is not None}


def warn_renamed(argv, renamed: dict[str, str]) -> None:
    """One vocabulary across the commands: a folder is `--output-dir`, a file `--output`, a setting has its run-config
    name. The old spellings in `renamed` (`{old: new}`) still work for one release; each one used is named on stderr
    with its new spelling."""
    argv = sys.argv[1:] if argv is None else argv
    for old, new in renamed.items():
        if any(arg == old or arg.startswith(old + "=") for arg in argv):
            warn_deprecated(old, new)


def warn_deprecated(old: str, new: str) -> None:
    """Names on stderr a spelling that still works for one release (`old`), and the one to use instead (`new`)."""
    print(f"warning: {old} is deprecated and goes in the next release: use {new}", file=sys.stderr)
