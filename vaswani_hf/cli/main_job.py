"""The whole recipe on the built-in corpus, on a CPU: data, tokenizer, 20 minutes of training, checkpoint averaging,
test BLEU/chrF with the paper's decoding, a BLEU-over-training-time curve, a few translations, and the model card
(`model/README.md`, what `vaswani-push` uploads).

    vaswani-main-job                        # writes outputs/main-job/
    vaswani-main-job --minutes 5 --output-dir outputs/quick

Training runs as `vaswani-train --config small-cpu` does, in its own processes; a killed main job continues from its
last checkpoint when started again. `bash scripts/main_job.sh` also installs what it needs. The stages are
`vaswani_hf.studies.main_job`.
"""

import argparse

from vaswani_hf.errors import user_errors
from vaswani_hf.studies.main_job import MINUTES, PROCESSES, run_main_job


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="outputs/main-job")
    parser.add_argument(
        "--minutes", type=float, default=MINUTES, help=f"training budget in minutes (default: {MINUTES:g})"
    )
    parser.add_argument("--processes", type=int, default=PROCESSES, help="training processes (default: 2)")
    parser.add_argument("--no-curve", action="store_true", help="skip scoring every checkpoint on test_help")
    parser.add_argument("overrides", nargs="*", help="extra run-config overrides of the training (section.key=value)")
    # Options and section.key=value overrides in any order: `... output_dir=x --resume train.max_minutes=30`.
    return parser.parse_intermixed_args(argv)


@user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    run_main_job(args.output_dir, args.minutes, args.processes, curve=not args.no_curve, overrides=args.overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
