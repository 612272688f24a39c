"""`vaswani_hf.benchmarks.speed` (scripts/benchmark.py) measures what it says, on a tiny model: each engine's figures,
the forced output lengths, the FLOP count and the table. (The speed itself is the benchmark's business, not the
tests'.)"""

import json
from dataclasses import asdict

import pytest

from vaswani_hf.benchmarks import speed as benchmark

TINY = ["--vocab-size", "64", "--d-model", "32", "--d-ff", "64", "--heads", "2", "--layers", "1"]
TINY += ["--threads", "1", "--warmup", "0", "--repeats", "2", "--shape", "2x5"]


@pytest.fixture(scope="module")
def results():
    args = benchmark.parse_args(TINY)
    cells = benchmark.cells(args)
    assert {(c.engine, c.mode) for c in cells} == {
        ("vaswani_hf", "train"),
        ("marian", "train"),
        *((engine, mode) for engine in benchmark.ENGINES for mode in ("greedy", "beam4")),
    }
    return [{**asdict(cell), **benchmark.run_worker(json.dumps(asdict(cell)))} for cell in cells]


def test_every_cell_has_positive_figures(results):
    for result in results:
        assert result["tokens_per_s"] > 0 and len(result["times"]) == 2
        assert result["tokens_per_s"] == pytest.approx(2 * 5 / result["seconds"])


def test_training_flops_are_the_same_work_for_both_models(results):
    """Same shapes, same layers: the FLOP counter sees the same products in both models, attention's included.
    Counted in multiply-adds per sequence, then 2 FLOPs each, forward once and backward twice."""
    flops = {r["engine"]: r["flops_per_step"] for r in results if r["mode"] == "train"}
    assert flops["vaswani_hf"] == flops["marian"]
    batch, length, d, vocab, d_ff = 2, 5, 32, 64, 64
    per_token = 4 * d * d + 2 * d * d_ff  # encoder layer: W^Q, W^K, W^V, W^O and the FFN
    # Decoder layer (cross-attention W^K, W^V counted per target token: source and target are equally long here) and the
    # output projection.
    per_target = 8 * d * d + 2 * d * d_ff + d * vocab
    attention = 3 * 2 * length * length * d  # QK^T and AV of encoder self-, decoder self- and cross-attention
    expected = 3 * 2 * batch * (length * per_token + length * per_target + attention)
    assert flops["vaswani_hf"] == expected


def test_decoding_is_refused_when_an_output_is_shorter_than_forced(monkeypatch):
    args = benchmark.parse_args(TINY + ["--modes", "greedy", "--engines", "vaswani_hf"])
    (cell,) = benchmark.cells(args)
    original = benchmark.build_vaswani

    def ends_early(cell):
        model = original(cell)
        generate = model.generate
        model.generate = lambda **kwargs: generate(**{**kwargs, "min_new_tokens": 0, "max_new_tokens": 2})
        return model

    monkeypatch.setattr(benchmark, "build_vaswani", ends_early)
    with pytest.raises(RuntimeError, match="lengths"):
        benchmark.run_worker(json.dumps(asdict(cell)))


def test_table_has_ratios_to_marian(results):
    table = benchmark.table(results, peak_tflops=1.0)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {"train", "greedy", "beam4"}
    ours = next(r for r in results if r["mode"] == "greedy" and r["engine"] == "vaswani_hf")
    marian = next(r for r in results if r["mode"] == "greedy" and r["engine"] == "marian")
    assert f"{ours['tokens_per_s'] / marian['tokens_per_s']:.2f}x" in rows["greedy"]


def test_shape_must_be_batch_x_length():
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--shape", "16-32"])


def test_rounds_pool_every_call_and_keep_the_highest_peak(results):
    """`--rounds`: one cell measured twice gives the median of its four calls and the larger of its two peaks."""
    first = next(r for r in results if r["mode"] == "train" and r["engine"] == "vaswani_hf")
    cell = benchmark.Cell(**{k: first[k] for k in benchmark.Cell.__dataclass_fields__})
    second = {**first, "times": [t * 3 for t in first["times"]], "peak_mib": (first["peak_mib"] or 0) + 5}
    merged = benchmark.merge_rounds(cell, [first, second])
    times = first["times"] + second["times"]
    assert merged["times"] == times and merged["rounds"] == 2
    assert merged["seconds"] == pytest.approx(sorted(times)[1] / 2 + sorted(times)[2] / 2)
    assert merged["tokens_per_s"] == pytest.approx(2 * 5 / merged["seconds"])
    assert merged["tflops"] == pytest.approx(first["flops_per_step"] / merged["seconds"] / 1e12)
    assert merged["peak_mib"] == second["peak_mib"]
    with pytest.raises(SystemExit):
        benchmark.parse_args(TINY + ["--rounds", "0"])


@pytest.mark.slow
def test_compiled_training_measures_the_same_work(results):
    """`--compile`: the tiny training step through torch.compile(model) is timed, and its FLOPs, counted on the
    uncompiled model, are those of the eager step."""
    args = benchmark.parse_args(TINY + ["--modes", "train", "--engines", "vaswani_hf", "--compile"])
    (cell,) = benchmark.cells(args)
    assert cell.compile
    compiled = benchmark.run_worker(json.dumps(asdict(cell)))
    eager = next(r for r in results if r["mode"] == "train" and r["engine"] == "vaswani_hf")
    assert compiled["tokens_per_s"] > 0 and len(compiled["times"]) == 2
    assert compiled["flops_per_step"] == eager["flops_per_step"]
    assert "train (compiled)" in benchmark.table([{**asdict(cell), **compiled}], peak_tflops=1.0)


def test_a_measurement_runs_in_a_worker_process_of_its_own():
    """The driver runs each cell as `python -m vaswani_hf.benchmarks.speed --worker`, whichever script started it."""
    args = benchmark.parse_args(TINY + ["--modes", "greedy", "--engines", "vaswani_hf"])
    (cell,) = benchmark.cells(args)
    figures = benchmark.in_fresh_process(asdict(cell), timeout=300)
    assert figures["tokens_per_s"] > 0 and len(figures["times"]) == 2
