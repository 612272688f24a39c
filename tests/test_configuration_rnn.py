"""Tests of the recurrent model's configuration (vaswani_hf.configuration_rnn): its checks and generic names."""

import pytest
from conftest import tiny_rnn_config as tiny_config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(cell="rnn"), r"cell must be one of \('gru', 'lstm'\), got 'rnn'"),
        (dict(attention="bahdanau"), r"attention must be one of .*'additive'.*got 'bahdanau'"),
        (dict(attention="dot", bidirectional=True), r"attention='general'.* or bidirectional=False"),
        (dict(bidirectional="yes"), r"bidirectional must be True or False"),
        (dict(hidden_size=0), r"hidden_size must be a positive integer, got 0"),
        (dict(embedding_size=2.5), r"embedding_size must be a positive integer"),
        (dict(decoder_layers=True), r"decoder_layers must be a positive integer"),
        (dict(dropout=1.0), r"dropout must be a number in \[0, 1\), got 1.0"),
        (dict(initializer_range=0), r"initializer_range must be a positive number"),
        (dict(eos_token_id=24), r"eos_token_id must be a token id in \[0, vocab_size=24\), got 24"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_config_warns_about_a_misspelt_option():
    with pytest.warns(UserWarning, match="did you mean 'attention'"):
        tiny_config(attenion="dot")


def test_config_answers_to_generic_names():
    config = tiny_config("lstm", "general", True)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (8, 1, 24)
    # What transformers sizes decoder-side structures by.
    assert config.get_text_config(decoder=True).num_hidden_layers == config.decoder_layers == 2
    assert config.to_dict()["auto_map"]["AutoConfig"] == "configuration_rnn.RNNConfig"
