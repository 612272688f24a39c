"""Average the last N checkpoints of a training run into a model directory (§6.1: the last 5 for base models, the
last 20 for big ones).

    python scripts/average_checkpoints.py outputs/base --last 5 --output outputs/base/model-avg5
    python scripts/average_checkpoints.py outputs/base --checkpoints checkpoint-00090000 checkpoint-00100000 \\
        --output outputs/base/model-pair

The result loads with `AutoModelForSeq2SeqLM.from_pretrained` and carries the run's tokenizer.
"""

import argparse
from pathlib import Path

from transformers import AutoTokenizer

from vaswani_hf.training import CheckpointManager, save_averaged_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="output_dir of scripts/train.py")
    parser.add_argument("--output", type=Path, required=True, help="model directory to write")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--last", type=int, default=5, help="average the newest N checkpoints (default: 5)")
    which.add_argument("--checkpoints", nargs="+", help="checkpoint names or paths to average instead")
    args = parser.parse_args(argv)

    found = CheckpointManager(args.run_dir / "checkpoints", keep=1).checkpoints()
    if args.checkpoints:
        chosen = [Path(c) if Path(c).is_dir() else args.run_dir / "checkpoints" / c for c in args.checkpoints]
    else:
        if args.last <= 0:
            parser.error(f"--last must be positive, got {args.last}")
        if len(found) < args.last:
            print(f"warning: {args.run_dir} has {len(found)} checkpoints; averaging all of them")
        chosen = found[-args.last :]
    if not chosen:
        parser.error(f"no checkpoints in {args.run_dir / 'checkpoints'}")
    tokenizer = AutoTokenizer.from_pretrained(args.run_dir / "tokenizer")
    save_averaged_model(chosen, args.run_dir / "model_config", args.output, tokenizer=tokenizer)
    print(f"averaged {', '.join(c.name for c in chosen)} into {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
