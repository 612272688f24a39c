"""Speed of vaswani_hf against transformers' MarianMTModel (and CTranslate2) at the same size, side by side: a
training step and greedy and beam decoding of random batches. `--help` says what is measured and how
(`vaswani_hf.benchmarks.speed`).

    python scripts/benchmark.py                      # the headline shape on this machine's CPU, table to stdout
    python scripts/benchmark.py --shapes all --output bench.json --markdown bench.md
    python scripts/benchmark.py --device cuda --dtype bf16 --shapes all
"""

import sys

from vaswani_hf.benchmarks.speed import main

if __name__ == "__main__":
    sys.exit(main())
