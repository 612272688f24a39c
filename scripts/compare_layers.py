"""Measure Table 1 of the paper: one self-attention, one recurrent (LSTM) and one convolutional layer of the same
width, forward and backward, over sequence lengths 16 to 4096.

    flock /tmp/cpu.lock python scripts/compare_layers.py --output-dir docs/figures
    python scripts/compare_layers.py --device cuda --batch-size 8 --output-dir results/gpu
    python scripts/compare_layers.py --lengths 16 64 256 --d-model 256 --output-dir /tmp/quick

Writes `compare_layers.json` (settings, every measurement, the fitted growth exponents) and `compare_layers.png`
(log-log time and peak memory against n) to --output-dir and prints the tables. Each measurement runs in a fresh
process; CPU peak memory is read from Linux's /proc (see vaswani_hf/layer_comparison.py for how and why). Timings
are only worth comparing on an otherwise idle machine: hold a lock that other timing runs take too (flock above).
Needs matplotlib for the PNG: pip install "vaswani_hf[plots]".
"""

import argparse
import json
from pathlib import Path

from vaswani_hf.analysis.layer_comparison import (
    DEFAULT_LENGTHS,
    Settings,
    compare_layers,
    format_table,
    plot_comparison,
)
from vaswani_hf.files import write_atomic

JSON_FILE = "compare_layers.json"
PNG_FILE = "compare_layers.png"


def parse_args(argv=None) -> argparse.Namespace:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--output-dir",
        "--out-dir",
        dest="out_dir",
        required=True,
        help="folder for compare_layers.json and compare_layers.png",
    )
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=list(DEFAULT_LENGTHS),
        help="sequence lengths n (default: 16 ... 4096)",
    )
    parser.add_argument("--d-model", type=int, default=defaults.d_model, help="layer width d (default: 512)")
    parser.add_argument("--num-heads", type=int, default=defaults.num_heads, help="attention heads (default: 8)")
    parser.add_argument(
        "--kernel-size", type=int, default=defaults.kernel_size, help="convolution width k (default: 3)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="sequences per pass (default: 2)")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="CPU threads per pass (default: 1)")
    parser.add_argument(
        "--attention",
        choices=("eager", "sdpa"),
        default=defaults.attention,
        help="attention kernel: eager forms the n x n weights as the paper does (default); sdpa may fuse them away",
    )
    parser.add_argument("--min-repeats", type=int, default=defaults.min_repeats, help="timed passes, at least (5)")
    parser.add_argument(
        "--min-seconds", type=float, default=defaults.min_seconds, help="time each measurement this long, at least (2)"
    )
    parser.add_argument("--max-repeats", type=int, default=defaults.max_repeats, help="timed passes, at most (100)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        settings = Settings(
            d_model=args.d_model,
            num_heads=args.num_heads,
            kernel_size=args.kernel_size,
            batch_size=args.batch_size,
            lengths=tuple(args.lengths),
            device=args.device,
            threads=args.threads,
            attention=args.attention,
            min_repeats=args.min_repeats,
            min_seconds=args.min_seconds,
            max_repeats=args.max_repeats,
        )
    except ValueError as error:
        raise SystemExit(f"compare_layers.py: error: {error}") from error
    report = compare_layers(settings, progress=lambda line: print(line, flush=True))
    out_dir = Path(args.out_dir)
    write_atomic(out_dir / JSON_FILE, json.dumps(report, indent=2) + "\n")
    print()
    print(format_table(report))
    print(f"\nwrote {out_dir / JSON_FILE}")
    try:
        print(f"wrote {plot_comparison(report, out_dir / PNG_FILE)}")
    except ImportError as error:
        raise SystemExit(f"compare_layers.py: {error} (the JSON is written)") from error


if __name__ == "__main__":
    main()
