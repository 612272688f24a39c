"""The model config a run trains, from its run config's `model` section and its tokenizer, for each architecture
`model.architecture` names. Everything else in the recipe takes any `AutoModelForSeq2SeqLM`; this is the one place
that knows which fields each architecture has."""

from __future__ import annotations

from transformers import MarianConfig, PretrainedConfig

from ..configuration_rnn import RNNConfig
from ..configuration_vaswani import VaswaniConfig
from .run_config import ALL, SETTINGS, ModelArgs

# The run-config fields each architecture reads (`setting(architectures=...)`); a field set for an architecture that
# lacks it is an error, so that `model.d_ff=512` on a recurrent model does not train something other than what was
# asked for.
FIELDS = {
    architecture: tuple(
        key.removeprefix("model.")
        for key, s in SETTINGS.items()
        if key.startswith("model.") and architecture in s.architectures
    )
    for architecture in ALL
}


def build_model_config(model: ModelArgs, tokenizer) -> PretrainedConfig:
    """The model configuration of a run: the architecture's defaults (for the Transformer, the Table 3 row of
    `model.preset`) with the fields the run config sets, and the tokenizer's vocabulary and special tokens.

    Raises:
        ValueError: if a field is set that the architecture does not have, or a choice has no equivalent in it.
    """
    overrides = model.overrides()
    foreign = [
        name for name in (*overrides, *(["attn_implementation"] if model.attn_implementation else []))
        if name not in FIELDS[model.architecture]
    ]  # fmt: skip
    if foreign:
        raise ValueError(
            f"model.architecture={model.architecture} has no {', '.join(f'model.{name}' for name in foreign)}: "
            f"remove {'it' if len(foreign) == 1 else 'them'} from the run config (its fields: "
            f"{', '.join(name for name in FIELDS[model.architecture] if name not in ('architecture', 'preset'))})."
        )
    tokens = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    if model.architecture == "rnn":
        return RNNConfig(**tokens, **overrides)
    preset = VaswaniConfig.big if model.preset == "big" else VaswaniConfig.base
    config = preset(**tokens, **overrides)
    if model.architecture == "vaswani":
        return config
    return marian_config(config)


def marian_config(config: VaswaniConfig) -> MarianConfig:
    """The `MarianConfig` of the same network as `config`: MarianMTModel is the paper's post-norm model with fixed
    sinusoidal positions, embeddings scaled by sqrt(d_model) and one shared embedding matrix, so these sizes give it
    the architecture of §3 (`vaswani_hf.export.marian` converts the weights too).

    Raises:
        ValueError: for a choice Marian has no equivalent of (pre-norm, learned positions, untied embeddings).
    """
    if config.norm_first or config.position_embedding_type != "sinusoidal" or not config.tie_word_embeddings:
        raise ValueError(
            "MarianMTModel is post-norm with sinusoidal positions and tied embeddings: set "
            "model.norm_first=false, model.position_embedding_type=sinusoidal and model.tie_word_embeddings=true."
        )
    return MarianConfig(
        vocab_size=config.vocab_size, d_model=config.d_model, encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers, encoder_attention_heads=config.num_heads,
        decoder_attention_heads=config.num_heads, encoder_ffn_dim=config.d_ff, decoder_ffn_dim=config.d_ff,
        dropout=config.dropout, attention_dropout=config.attention_dropout, activation_function="relu",
        max_position_embeddings=config.max_position_embeddings, scale_embedding=True,
        share_encoder_decoder_embeddings=True, tie_word_embeddings=True, pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id, forced_eos_token_id=config.eos_token_id,
    )  # fmt: skip
