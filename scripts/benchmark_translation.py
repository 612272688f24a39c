"""What a user waits for: a real test set translated with the paper's beam search, by each engine, end to end.
`--help` says what is measured and how (`vaswani_hf.benchmarks.translation`).

    python scripts/benchmark_translation.py outputs/main-job-postnorm/model \
        --output docs/benchmarks/translation-cpu.json --markdown docs/benchmarks/translation-cpu.md
"""

from vaswani_hf.benchmarks.translation import main

if __name__ == "__main__":
    raise SystemExit(main())
