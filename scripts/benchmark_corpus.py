"""From text files of a WMT-sized corpus (4.5M pairs, built in code) to the first training update: seconds and memory
of a cold start, a second start, a resume, two processes and the stock datasets + Seq2SeqTrainer path. `--help` says
what is measured and how (`vaswani_hf.benchmarks.corpus`).

    python scripts/benchmark_corpus.py --output docs/benchmarks/corpus-wmt-size.json \
        --markdown docs/benchmarks/corpus-wmt-size.md
"""

from vaswani_hf.benchmarks.corpus import main

if __name__ == "__main__":
    raise SystemExit(main())
