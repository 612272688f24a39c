"""The training precision that `train.mixed_precision: auto` picks for the machine at hand.

bf16 autocast pays where the hardware multiplies bf16 matrices: GPUs that support it, and CPUs with AMX tiles (Intel
Sapphire Rapids and later, about 6x fp32 here) or AVX-512 bf16 dot products (AMD Zen 4 and later, about 1.9x). A CPU
without either emulates bf16 in fp32 arithmetic, with conversions on top: a step of the small-cpu preset took 38 s
instead of well under a second on an AVX2-only AMD EPYC. There `auto` trains in fp32.
"""

from __future__ import annotations

import torch

from ..provenance import bf16_matrix_units


def resolve_mixed_precision(setting: str, device_type: str | None = None) -> tuple[str, str]:
    """`(precision, why)`: `setting` itself unless it is "auto"; for "auto", "bf16" on a GPU that supports it or a CPU
    with bf16 matrix units, else "no" (fp32)."""
    if setting != "auto":
        return setting, "as set"
    device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU supports bf16"
        return "no", "the GPU has no bf16"
    if device_type != "cpu":
        return "no", f"no bf16 rule for {device_type}"
    units = bf16_matrix_units()
    if units is not None:
        return "bf16", f"the CPU multiplies bf16 in hardware ({units})"
    return "no", "the CPU has no bf16 instructions (bf16 would be emulated, far slower than fp32)"
