"""Benchmarks against other engines, each measurement in a process of its own: a training step and decoding of random
batches against transformers' Marian and CTranslate2 (`speed`, run by scripts/benchmark.py), a real test set
translated end to end by each engine (`translation`, run by scripts/benchmark_translation.py), and a file of a million
lines translated window by window, at once and by CTranslate2, with an interrupted run continued (`streaming`, run by
scripts/benchmark_streaming.py)."""
