"""Tests for vaswani_hf.analysis.layer_comparison and scripts/compare_layers.py: the fit on synthetic curves, the counts against
Table 1 and torch's FLOP counter, the memory reading, and a run of the script over tiny lengths and width."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from vaswani_hf.analysis.layer_comparison import (
    LAYER_CLASSES,
    LAYERS,
    Settings,
    fit_exponent,
    forward_flops,
    max_path_length,
    measure_in_fresh_process,
    peak_memory,
    sequential_steps,
)

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_layers.py"
LENGTHS = [2**i for i in range(4, 13)]  # 16 ... 4096

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_recovers_exponents_of_synthetic_curves():
    n = np.array(LENGTHS, dtype=float)
    assert fit_exponent(LENGTHS, 3e-9 * n**2) == pytest.approx(2.0, abs=1e-9)
    assert fit_exponent(LENGTHS, 5e-4 * n) == pytest.approx(1.0, abs=1e-9)
    # Multiplicative noise of up to 10% moves the slope by little over 9 octaves.
    noise = np.random.default_rng(0).uniform(0.9, 1.1, len(LENGTHS))
    assert fit_exponent(LENGTHS, 7.0 * n**1.5 * noise) == pytest.approx(1.5, abs=0.05)

    # An n^2 term behind a fixed overhead and a linear one: the upper half of the lengths sees the n^2.
    mixed = 1e-3 + 1e-5 * n + 1e-8 * n**2
    upper = Settings(lengths=tuple(LENGTHS)).fit_lengths
    assert upper == (256, 512, 1024, 2048, 4096)
    assert fit_exponent(LENGTHS, mixed) < 1.2 < fit_exponent(LENGTHS, mixed, upper) < 2.0


def test_fit_skips_missing_and_non_positive_values():
    values = [None, 0, 4.0, 16.0, -1.0]
    assert fit_exponent([1, 2, 4, 8, 16], values) == pytest.approx(2.0)
    assert fit_exponent([1, 2, 4], [None, 0, 5.0]) is None
    assert fit_exponent([1, 2, 4], [1.0, 2.0, 4.0], fit_lengths=(4,)) is None


def test_counts_follow_table_1():
    for n in (16, 4096):
        assert [sequential_steps(name, n) for name in LAYERS] == [1, n, 1]
        assert max_path_length("self_attention", n, 3) == 1
        assert max_path_length("recurrent", n, 3) == n - 1
    # A dilated stack of width-3 convolutions covers 3^L positions with L layers.
    assert [max_path_length("convolutional", n, 3) for n in (2, 3, 4, 9, 10, 27, 28)] == [1, 1, 2, 2, 3, 3, 4]
    assert max_path_length("convolutional", 4096, 3) == math.ceil(math.log(4096, 3))


@pytest.mark.parametrize("name", ["self_attention", "convolutional"])
def test_forward_flops_match_torch_flop_counter(name):
    # torch counts matrix products and convolutions, not the LSTM's fused kernel.
    settings = Settings(d_model=16, num_heads=2, kernel_size=3, batch_size=2, attention="eager")
    layer = LAYER_CLASSES[name](settings)
    for n in (8, 24):
        with FlopCounterMode(display=False) as counter:
            layer(torch.randn(2, n, 16))
        assert forward_flops(name, n, settings) == counter.get_total_flops()
    # At n = 2d attention's n^2·d products cost as much as its four n·d^2 projections.
    n = 2 * settings.d_model
    assert forward_flops("self_attention", n, settings) == 2 * 8 * settings.batch_size * n * settings.d_model**2


def test_layers_map_b_n_d_to_b_n_d():
    settings = Settings(d_model=16, num_heads=2, kernel_size=5)
    x = torch.randn(2, 7, 16)
    for name in LAYERS:
        assert LAYER_CLASSES[name](settings)(x).shape == (2, 7, 16)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="CPU peak memory is read from Linux's /proc")
def test_cpu_peak_memory_sees_an_allocation():
    size = 64 * 2**20

    def allocate():
        block = torch.ones(size // 4)  # float32, every page written
        del block

    peak = peak_memory(allocate, torch.device("cpu"))
    # Linux batches its per-thread resident-page counts, so they lag by up to a few hundred KiB.
    assert 0.99 * size <= peak < 1.1 * size
    assert peak_memory(lambda: None, torch.device("cpu")) < 2**20


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_failing_measurement_reports_its_traceback():
    with pytest.raises(RuntimeError, match="Measuring recurrent at n=8 failed:(.|\n)*Traceback"):
        measure_in_fresh_process("recurrent", 8, Settings(d_model=8, num_heads=2, device="cuda"))


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="must be odd and at least 3"):
        Settings(kernel_size=4)
    with pytest.raises(ValueError, match="must be odd and at least 3"):
        Settings(kernel_size=1)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        Settings(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="at least two different"):
        Settings(lengths=(16, 16))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Settings(batch_size=0)
    assert Settings(lengths=(64, 16, 32)).lengths == (16, 32, 64)


def run_script(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, env=env, timeout=600)


def test_script_over_tiny_lengths(tmp_path):
    lengths = [8, 16, 32, 64]
    tiny = ["--d-model", "16", "--num-heads", "2", "--batch-size", "1", "--min-repeats", "2", "--min-seconds", "0"]
    done = run_script("--output-dir", str(tmp_path), "--lengths", *map(str, lengths), *tiny)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((tmp_path / "compare_layers.json").read_text())
    assert report["settings"]["lengths"] == lengths and report["settings"]["d_model"] == 16
    assert report["fit_lengths"] == [32, 64]
    assert {"transformers", "torch", "accelerate"} <= set(report["provenance"]["versions"])
    assert report["provenance"]["command"] and report["provenance"]["cpu"]["model"]
    assert list(report["layers"]) == list(LAYERS)
    for name, layer in report["layers"].items():
        assert [row["n"] for row in layer["measurements"]] == lengths
        for row in layer["measurements"]:
            assert row["forward_s"] > 0 and row["backward_s"] > 0 and row["step_s"] > 0
            assert row["repeats"] >= 2
            assert row["step_cpu_s"] > 0 and row["cpu_share"] > 0
            assert row["peak_memory_bytes"] is None or row["peak_memory_bytes"] >= 0
            assert row["sequential_steps"] == sequential_steps(name, row["n"])
        # Timings of tiny layers are noise, but every fit over two positive points gives a number.
        assert isinstance(layer["exponents"]["step_time"], float)
        # From n = 32 to 64 at d = 16, attention's 8·n·d^2 + 4·n^2·d FLOPs triple; the others' double.
        expected = math.log2(3) if name == "self_attention" else 1.0
        assert layer["exponents"]["forward_flops"] == pytest.approx(expected)

    with Image.open(tmp_path / "compare_layers.png") as image:
        image.verify()
        assert 800 <= image.size[0] <= 2000 and 300 <= image.size[1] <= 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare_layers.json", "compare_layers.png"]
    printed = done.stdout
    assert "growth exponents in n, fitted over n = 32, 64 (" in printed
    assert "O(n^2·d)" in printed

    refused = run_script("--output-dir", str(tmp_path), "--kernel-size", "2")
    assert refused.returncode != 0 and "compare_layers.py: error: kernel_size must be odd" in refused.stderr
