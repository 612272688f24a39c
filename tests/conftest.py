"""Shared fixtures: tiny configurations that run in milliseconds on a CPU."""

import pytest

from vaswani_hf import VaswaniConfig

TINY = dict(
    vocab_size=64,
    d_model=16,
    d_ff=32,
    num_heads=2,
    encoder_layers=2,
    decoder_layers=2,
    dropout=0.0,
    max_position_embeddings=32,
)


@pytest.fixture
def tiny_config():
    """Factory: `tiny_config(**overrides)` gives a fresh tiny VaswaniConfig (dropout 0, 2+2 layers, d_model 16)."""

    def make(**overrides) -> VaswaniConfig:
        return VaswaniConfig(**{**TINY, **overrides})

    return make
