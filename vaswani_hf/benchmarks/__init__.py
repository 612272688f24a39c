"""Benchmarks against other engines, each measurement in a process of its own: a training step and decoding of random
batches against transformers' Marian and CTranslate2 (`speed`, run by scripts/benchmark.py), and a real test set
translated end to end by each engine (`translation`, run by scripts/benchmark_translation.py)."""
