"""Translating a large file: window by window (`vaswani-translate --output`), against the whole file at once and
CTranslate2, and an interrupted run continued. `--help` says what is measured and how
(`vaswani_hf.benchmarks.streaming`).

    python scripts/benchmark_streaming.py outputs/main-job-postnorm/model --lines 20000 \
        --output docs/benchmarks/streaming-cpu.json --markdown docs/benchmarks/streaming-cpu.md
"""

from vaswani_hf.benchmarks.streaming import main

if __name__ == "__main__":
    raise SystemExit(main())
