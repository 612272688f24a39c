"""The training precision that `train.mixed_precision: auto` picks for the machine at hand.

bf16 autocast pays where the hardware multiplies bf16 matrices: GPUs that support it, and CPUs with AMX tiles (Intel
Sapphire Rapids and later, about 6x fp32) or AVX-512 bf16 dot products (AMD Zen 4 and later, about 1.9x). A CPU
without either emulates bf16 in fp32 arithmetic, with conversions on top: a step of the small-cpu preset took 38 s
instead of well under a second on an AVX2-only AMD EPYC. CPU flags say what the hardware has, not what PyTorch's
kernels make of it on this machine with these threads, so on a CPU `auto` measures: `probe_cpu` times a feed-forward
block of the run's size in fp32 and under bf16 autocast, and bf16 is chosen only where it is clearly faster.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..provenance import bf16_matrix_units, cpu_model

# bf16 must beat fp32 by this factor: below it, the rounding of bf16 is not worth a gain within the noise of a probe.
BF16_MIN_SPEEDUP = 1.2


def probe_cpu(d_model: int = 512, d_ff: int = 2048, tokens: int = 512, repeats: int = 5) -> dict:
    """Milliseconds of forward + backward of §3.3's feed-forward block (`d_model` -> `d_ff` -> `d_model`) over
    `tokens` positions, in fp32 and under bf16 autocast: the median of `repeats` after one warm-up, with the threads
    the run trains with. Under a second at the small-cpu preset's size, a few at the base size."""
    generator = torch.Generator().manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(d_model, d_ff), torch.nn.ReLU(), torch.nn.Linear(d_ff, d_model))
    x = torch.randn(tokens, d_model, generator=generator)  # (T, d_model)

    def milliseconds(autocast: bool, give_up: float = float("inf")) -> float:
        times = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = block(x).float().square().mean()
            loss.backward()
            times.append(1000 * (time.perf_counter() - started))
            # Emulated bf16 runs 10-20x slower than fp32: once a timed run is far behind, more would only cost time.
            if len(times) > 1 and times[-1] > give_up:
                break
        return statistics.median(times[1:])

    # Rounded before the ratio, so that the record's speedup is the ratio of the times it shows.
    fp32 = round(milliseconds(False), 2)
    bf16 = round(milliseconds(True, give_up=2 * fp32), 2)
    return {
        "block": {"d_model": d_model, "d_ff": d_ff, "tokens": tokens},
        "fp32_ms": fp32,
        "bf16_ms": bf16,
        "bf16_speedup": round(fp32 / bf16, 2),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "bf16_matrix_units": bf16_matrix_units(),
    }


def resolve_mixed_precision(
    setting: str, device_type: str | None = None, *, d_model: int = 512, d_ff: int = 2048
) -> tuple[str, str, dict | None]:
    """`(precision, why, probe)`: `setting` itself unless it is "auto"; for "auto", "bf16" on a GPU that supports it,
    and on a CPU where `probe_cpu` at `d_model` x `d_ff` finds bf16 autocast at least `BF16_MIN_SPEEDUP` times
    faster than fp32, else "no" (fp32). `probe` is the CPU measurement (None where none was made), for the run's
    records."""
    if setting != "auto":
        return setting, "as set", None
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports bf16", None
        return "no", "the GPU has no bf16", None
    if device_type != "cpu":
        return "no", f"no bf16 rule for {device_type}", None
    probe = probe_cpu(d_model, d_ff)
    units = probe["bf16_matrix_units"] or "no bf16 matrix units"
    measured = (
        f"a {d_model}x{d_ff} feed-forward block took {probe['bf16_ms']} ms in bf16 against {probe['fp32_ms']} ms in "
        f"fp32 on this CPU ({units})"
    )
    if probe["bf16_speedup"] >= BF16_MIN_SPEEDUP:
        return "bf16", measured, probe
    return "no", measured, probe
