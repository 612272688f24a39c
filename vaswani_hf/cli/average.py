"""Average the last N checkpoints of a training run into a model directory (§6.1: the last 5 for base models, the
last 20 for big ones).

    vaswani-average outputs/base --last 5 --output-dir outputs/base/model-avg5
    vaswani-average outputs/base --checkpoints checkpoint-00090000 checkpoint-00100000 \\
        --output outputs/base/model-pair

The result loads with `AutoModelForSeq2SeqLM.from_pretrained` and carries the run's tokenizer.
"""

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from vaswani_hf.cli.options import warn_renamed
from vaswani_hf.errors import user_errors
from vaswani_hf.files import SaveError, check_replaceable_model_dir
from vaswani_hf.run_dir import RunDir
from vaswani_hf.training.checkpoints import CheckpointManager, save_averaged_model


def output_clash(output: Path, run_dir: Path, chosen: list[Path]) -> str | None:
    """What `output` would overwrite or mix with in the run, or None. The averaged model directory replaces its
    folder, and a folder under checkpoints/ would be taken for a checkpoint by --resume."""
    output, run_dir = output.resolve(), run_dir.resolve()
    if output == run_dir or run_dir.is_relative_to(output):
        return f"the training run {run_dir}" + ("" if output == run_dir else " or a folder holding it")
    run = RunDir(run_dir)
    if output.is_relative_to(run.checkpoints):
        return f"in the run's checkpoints folder {run.checkpoints}"
    for folder in (run.tokenizer, run.model_config):
        if output.is_relative_to(folder):
            return f"the run's {folder.name} folder, which training and averaging read"
    for checkpoint in (c.resolve() for c in chosen):
        if output.is_relative_to(checkpoint) or checkpoint.is_relative_to(output):
            return f"the checkpoint {checkpoint}, or in or around it"
    return None


@user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="output_dir of vaswani-train")
    parser.add_argument(
        "--output-dir",
        "--output",
        dest="output",
        type=Path,
        required=True,
        help="model directory to write (--output is its deprecated spelling)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, default=5, help="average the newest N checkpoints (default: 5)")
    which.add_argument("--checkpoints", nargs="+", help="checkpoint names or paths to average instead")
    args = parser.parse_args(argv)
    warn_renamed(argv, {"--output": "--output-dir"})

    run = RunDir(args.run_dir)
    found = CheckpointManager(run.checkpoints, keep=1).checkpoints()
    if args.checkpoints:
        chosen = [Path(c) if Path(c).is_dir() else run.checkpoints / c for c in args.checkpoints]
    else:
        if args.last <= 0:
            parser.error(f"--last must be positive, got {args.last}")
        if len(found) < args.last:
            print(f"warning: {args.run_dir} has {len(found)} checkpoints; averaging all of them")
        chosen = found[-args.last :]
    if not chosen:
        parser.error(f"no checkpoints in {args.run_dir / 'checkpoints'}")
    # Before any work: --output is replaced as a whole, so it must not be (or hold) the run or what it is made from.
    clash = output_clash(args.output, args.run_dir, chosen)
    if clash:
        parser.error(
            f"--output-dir {args.output} is {clash}: the model directory written there would replace or mix with the "
            f"run's files. Choose a new folder, e.g. --output {args.run_dir / f'model-avg{len(chosen)}'}."
        )
    try:
        check_replaceable_model_dir(args.output)
    except FileExistsError as error:
        parser.error(f"--output: {error}")
    tokenizer = AutoTokenizer.from_pretrained(run.tokenizer)
    try:
        save_averaged_model(chosen, run.model_config, args.output, tokenizer=tokenizer)
    except SaveError as error:  # a full disk: the message says what happened and what to do, a traceback adds nothing
        raise SystemExit(f"error: {error}") from error
    print(f"averaged {', '.join(c.name for c in chosen)} into {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
