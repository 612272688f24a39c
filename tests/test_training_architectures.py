"""Tests of `vaswani_hf.training.architectures`: the model config of a run, for each `model.architecture`."""

import pytest
from transformers import MarianConfig

from vaswani_hf import RNNConfig, VaswaniConfig, train_shared_bpe
from vaswani_hf.training.architectures import build_model_config
from vaswani_hf.training.run_config import RunConfig


@pytest.fixture(scope="module")
def tokenizer():
    return train_shared_bpe(["the house is small", "das Haus ist klein"] * 10, vocab_size=60, min_frequency=1)


def model_args(*overrides: str):
    return RunConfig.load("small-cpu", list(overrides)).model


def test_the_transformer_is_the_preset_with_the_run_fields_and_the_tokenizer(tokenizer):
    config = build_model_config(model_args(), tokenizer)
    assert type(config) is VaswaniConfig
    assert (config.d_model, config.d_ff, config.num_heads, config.encoder_layers) == (256, 1024, 4, 3)
    assert config.norm_first and config.dropout == VaswaniConfig.base().dropout
    assert (config.vocab_size, config.pad_token_id, config.eos_token_id) == (
        len(tokenizer),
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
    )
    assert config.decoder_start_token_id == tokenizer.bos_token_id


def test_marian_gets_the_same_sizes_and_refuses_what_it_cannot_express(tokenizer):
    config = build_model_config(model_args("model.architecture=marian", "model.norm_first=false"), tokenizer)
    assert type(config) is MarianConfig
    assert (config.d_model, config.encoder_ffn_dim, config.encoder_attention_heads, config.decoder_layers) == (
        256,
        1024,
        4,
        3,
    )
    assert config.scale_embedding and config.share_encoder_decoder_embeddings and config.activation_function == "relu"
    with pytest.raises(ValueError, match="post-norm.*model.norm_first=false"):
        build_model_config(model_args("model.architecture=marian"), tokenizer)


def test_the_recurrent_model_takes_its_own_fields(tokenizer):
    args = [
        "model.architecture=rnn", "model.cell=lstm", "model.attention=general", "model.hidden_size=64",
        "model.embedding_size=32", "model.encoder_layers=2", "model.decoder_layers=2", "model.dropout=0.1",
    ]  # fmt: skip
    # The small-cpu preset sets Transformer sizes; a recurrent run starts from a config without them.
    base = RunConfig.load(None, args).model
    config = build_model_config(base, tokenizer)
    assert type(config) is RNNConfig
    assert (config.cell, config.attention, config.hidden_size, config.embedding_size) == ("lstm", "general", 64, 32)
    assert (config.encoder_layers, config.dropout, config.bidirectional) == (2, 0.1, RNNConfig().bidirectional)
    assert config.vocab_size == len(tokenizer) and config.eos_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.architecture=rnn", "model.d_ff=512"], "architecture=rnn has no model.d_ff"),
        (["model.architecture=rnn", "model.attn_implementation=eager"], "has no model.attn_implementation"),
        (["model.cell=gru"], "architecture=vaswani has no model.cell"),
        (["model.architecture=marian", "model.hidden_size=64"], "architecture=marian has no model.hidden_size"),
    ],
)
def test_a_field_the_architecture_lacks_is_an_error(tokenizer, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_model_config(RunConfig.load(None, overrides).model, tokenizer)
