"""Convert a saved model to CTranslate2, and optionally check that its greedy translations are ours.

    vaswani-export-ct2 outputs/main-job/model --output-dir outputs/main-job/ctranslate2
    vaswani-export-ct2 MODEL_DIR --output-dir OUTPUT_DIR --quantization int8 --force
    vaswani-export-ct2 outputs/main-job/model --output-dir outputs/main-job/ctranslate2 --check 200

--output-dir receives CTranslate2's model.bin, config.json and shared_vocabulary.json, plus the tokenizer, so that
`vaswani_hf.export.ctranslate2.CTranslate2Translator(OUTPUT_DIR)` can translate text. An existing OUTPUT_DIR is
refused unless --force, which replaces it. (The folder as a second positional argument, `vaswani-export-ct2 MODEL_DIR
OUTPUT_DIR`, is the deprecated spelling.) --quantization stores the weights as int8, float16, ... (default: float32).

--check N translates the first N English sentences of the built-in corpus's test_help split greedily with our model
and with the converted one, with the same output limit (source length + 50 unless --check-max-new-tokens), and prints
how many are identical token for token; for each that differs, where they part and our model's log-probabilities of
the two tokens there. --check-sentences FILE checks the lines of FILE instead.
"""

import argparse
import importlib
import json
import sys
from pathlib import Path

import torch

from vaswani_hf.cli.options import warn_deprecated
from vaswani_hf.errors import user_errors
from vaswani_hf.files import read_lines


def _export_module():
    """vaswani_hf.export.ctranslate2, imported when the command runs rather than when it loads: `--help` answers
    without the optional ctranslate2 package, and running without it says how to install it."""
    try:
        return importlib.import_module("vaswani_hf.export.ctranslate2")
    except ImportError as error:  # the message says how to install the missing package
        sys.exit(f"error: {error}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder of a saved VaswaniForConditionalGeneration (save_pretrained)")
    parser.add_argument("--output-dir", help="folder to write the CTranslate2 model to (required)")
    # The folder's old place, before every command named its output folder --output-dir.
    parser.add_argument("positional_output_dir", nargs="?", metavar="OUTPUT_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", metavar="DIR", help="folder of the model's tokenizer (default: MODEL_DIR)")
    parser.add_argument(
        "--quantization",
        metavar="TYPE",
        help="stored weight type, one of CTranslate2's (int8, int8_float16, float16, bfloat16, ...; default: float32)",
    )
    parser.add_argument("--force", action="store_true", help="replace --output-dir if it exists")
    check = parser.add_argument_group("parity check (greedy, ours against the converted model)")
    source = check.add_mutually_exclusive_group()
    source.add_argument("--check", type=int, metavar="N", help="the first N sentences of the test_help split")
    source.add_argument("--check-sentences", metavar="FILE", help="sentences to check, one per line (UTF-8)")
    check.add_argument(
        "--check-max-new-tokens", type=int, metavar="N", help="a fixed output limit instead of source length + 50"
    )
    check.add_argument("--check-report", metavar="FILE", help="write the comparison as JSON to FILE")
    check.add_argument(
        "--threads", type=int, default=0, metavar="N", help="CPU threads of both models (default: their own)"
    )
    args = parser.parse_args(argv)
    if args.positional_output_dir is not None:
        if args.output_dir is not None:
            parser.error("give the output folder once, as --output-dir")
        warn_deprecated("the output folder as a second positional argument", "--output-dir OUTPUT_DIR")
        args.output_dir = args.positional_output_dir
    if args.output_dir is None:
        parser.error("the following arguments are required: --output-dir")
    if args.check is not None and args.check <= 0:
        parser.error("--check N needs a positive N")
    return args


def check_sentences(args: argparse.Namespace) -> list[str]:
    if args.check_sentences is not None:
        return read_lines(args.check_sentences)
    from vaswani_hf.data.default_corpus import load_default_corpus

    pairs = load_default_corpus()["test_help"]["translation"][: args.check]
    return [pair["en"] for pair in pairs]


@user_errors
def main(argv=None) -> None:
    args = parse_args(argv)
    export = _export_module()
    from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

    if args.quantization is not None and args.quantization not in ACCEPTED_MODEL_TYPES:
        sys.exit(f"error: --quantization {args.quantization}: CTranslate2 takes {', '.join(ACCEPTED_MODEL_TYPES)}")
    ExportError = export.ExportError  # noqa: N806  (an exception class, named as one)
    converter = export.VaswaniConverter(args.model_dir, args.tokenizer)
    try:
        output_dir = converter.convert(args.output_dir, quantization=args.quantization, force=args.force)
    except (ExportError, OSError) as error:
        # ExportError says what cannot be exported and why; OSError is a folder that cannot be read or written.
        sys.exit(f"error: {error}")
    print(f"Converted {args.model_dir} to {output_dir} ({args.quantization or 'float32'} weights)")
    if args.check is None and args.check_sentences is None:
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    sentences = check_sentences(args)
    translator = export.CTranslate2Translator(output_dir, intra_threads=args.threads)
    report = export.compare_greedy(converter.model, translator, sentences, max_new_tokens=args.check_max_new_tokens)
    limit = f"at most {args.check_max_new_tokens}" if args.check_max_new_tokens else "at most source length + 50"
    print(
        f"Greedy translations, {limit} tokens: {report['identical']} of {report['sentences']} identical token for "
        "token"
    )
    for difference in report["differences"]:
        print(
            f"  #{difference['index']}: part at output token {difference['position']}: ours "
            f"{difference['ours_token']!r} (log-prob {difference['ours_log_prob']:.4f}), CTranslate2 "
            f"{difference['ctranslate2_token']!r} ({difference['ctranslate2_log_prob']:.4f}), margin "
            f"{difference['margin']:.2e}\n    source: {difference['source']}\n    ours:   {difference['ours']}\n"
            f"    ct2:    {difference['ctranslate2']}"
        )
    if args.check_report:
        Path(args.check_report).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
