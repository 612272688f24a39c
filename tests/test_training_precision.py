"""`train.mixed_precision: auto` (vaswani_hf.training.precision): bf16 where a measured probe finds it clearly faster
than fp32 on this CPU, fp32 where it is emulated, and any other setting as it is."""

import pytest

from vaswani_hf.training import precision


def probe(fp32_ms, bf16_ms):
    return lambda d_model, d_ff: {"fp32_ms": fp32_ms, "bf16_ms": bf16_ms, "bf16_speedup": round(fp32_ms / bf16_ms, 2),
                                  "bf16_matrix_units": None}  # fmt: skip


@pytest.mark.parametrize(
    "fp32_ms, bf16_ms, expected",
    [
        (60.0, 10.0, "bf16"),  # AMX: about 6x
        (19.0, 10.0, "bf16"),  # AVX-512 bf16 dot products: about 1.9x
        (11.0, 10.0, "no"),  # within the probe's noise: the rounding of bf16 is not worth it
        (10.0, 150.0, "no"),  # AVX2 only: emulated
    ],
)
def test_auto_follows_the_measured_probe(monkeypatch, fp32_ms, bf16_ms, expected):
    monkeypatch.setattr(precision, "probe_cpu", probe(fp32_ms, bf16_ms))
    chosen, why, measured = precision.resolve_mixed_precision("auto", "cpu", d_model=256, d_ff=1024)
    assert chosen == expected
    assert f"{bf16_ms} ms in bf16 against {fp32_ms} ms in fp32" in why and "256x1024" in why
    assert measured["bf16_speedup"] == round(fp32_ms / bf16_ms, 2)


def test_a_set_precision_is_kept_without_a_probe(monkeypatch):
    monkeypatch.setattr(precision, "probe_cpu", lambda *args: pytest.fail("probed"))
    for setting in ("no", "bf16", "fp16"):
        assert precision.resolve_mixed_precision(setting, "cpu") == (setting, "as set", None)


def test_the_probe_measures_both_precisions_on_this_cpu():
    measured = precision.probe_cpu(d_model=16, d_ff=32, tokens=8, repeats=2)
    assert measured["fp32_ms"] > 0 and measured["bf16_ms"] > 0
    assert measured["bf16_speedup"] == round(measured["fp32_ms"] / measured["bf16_ms"], 2)
    assert measured["block"] == {"d_model": 16, "d_ff": 32, "tokens": 8} and measured["cpu"]
