"""`train.mixed_precision: auto` (vaswani_hf.training.precision): bf16 where the hardware multiplies it, fp32 where it
would be emulated, and any other setting as it is."""

import pytest

from vaswani_hf import provenance
from vaswani_hf.training import precision


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"avx2", "amx_bf16", "amx_tile", "avx512_bf16"}, "bf16"),  # Intel Sapphire Rapids
        ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),  # AMD Zen 4
        ({"avx2", "fma"}, "no"),  # AVX2 only: bf16 emulated
    ],
)
def test_auto_follows_the_cpus_bf16_hardware(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "bf16_matrix_units", lambda: provenance.bf16_matrix_units(flags))
    chosen, why = precision.resolve_mixed_precision("auto", "cpu")
    assert chosen == expected and why


def test_a_set_precision_is_kept():
    for setting in ("no", "bf16", "fp16"):
        assert precision.resolve_mixed_precision(setting, "cpu") == (setting, "as set")
