"""The converter: a `VaswaniForConditionalGeneration` written as a CTranslate2 model.

`VaswaniConverter` is a `ctranslate2.converters.Converter`: it fills a `ctranslate2.specs.TransformerSpec` with the
weights of a `VaswaniForConditionalGeneration`, and ctranslate2 validates it, quantizes it (`quantization=`) and
writes the output folder (model.bin, config.json, shared_vocabulary.json); the tokenizer is saved beside them. Every
place where CTranslate2's conventions differ from this model's is set explicitly:

- positions: CTranslate2 computes its own sinusoids with the sines and cosines CONCATENATED (tensor2tensor's layout);
  ours interleave them (sin, cos, sin, cos, ...) as in §3.5, so the exported model carries our table explicitly, as
  it carries a learned position table;
- embedding scale: sqrt(d_model), given as a number rather than left to CTranslate2's default;
- normalisation: post-norm (`pre_norm=False`, no final LayerNorm) or pre-norm with the final LayerNorm of each stack;
  the LayerNorm epsilon is written to config.json (`layer_norm_epsilon`), which CTranslate2 reads;
- vocabulary: our tokenizer's tokens in id order, one vocabulary for source and target (§3.4);
- special tokens: decoding starts from <s> (`decoder_start_token_id`) and ends at </s>; CTranslate2 adds nothing to
  the source (`add_source_eos=False`) because our tokenizer already ends every source with </s>;
- output projection: the (tied) embedding matrix without a bias, as `lm_head`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from ctranslate2.converters import Converter
from ctranslate2.specs import common_spec, transformer_spec
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ...configuration_vaswani import VaswaniConfig
from ...modeling_vaswani import VaswaniForConditionalGeneration, VaswaniSinusoidalPositions

# Written beside CTranslate2's files: what decoding needs to know about the model that model.bin does not tell.
EXPORT_INFO_FILE = "vaswani_export.json"


class ExportError(ValueError):
    """A model, tokenizer or output folder that cannot be exported to CTranslate2; the message says why and what to
    do instead."""


# ---------------------------------------------------------------------------------------------------------------------
# Loading what to export
# ---------------------------------------------------------------------------------------------------------------------
def load_model_and_tokenizer(
    model_dir: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None
) -> tuple[VaswaniForConditionalGeneration, PreTrainedTokenizerBase]:
    """Loads a folder written by `save_pretrained` and its tokenizer (from `tokenizer`, a folder or a tokenizer
    object, else from `model_dir` itself), checking that it holds a Vaswani model before reading any weights.

    Raises:
        ExportError: if `model_dir` is not a folder with a config.json of a "vaswani" model, or no tokenizer is found.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise ExportError(f"No model folder at {str(path)!r}: pass the folder that save_pretrained() wrote.")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ExportError(
            f"{str(path)!r} has no config.json, so it is not a saved model folder: pass the folder that "
            "save_pretrained() wrote (e.g. outputs/main-job/model)."
        )
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    if model_type != VaswaniConfig.model_type:
        raise ExportError(
            f"{str(path)!r} holds a {model_type!r} model, not a {VaswaniConfig.model_type!r} one: this exporter "
            "converts VaswaniForConditionalGeneration only (ctranslate2's own ct2-transformers-converter handles "
            "the models that transformers ships)."
        )
    try:
        model = VaswaniForConditionalGeneration.from_pretrained(path)
    except (OSError, ValueError) as error:  # no weights file, or weights that do not fit config.json
        raise ExportError(f"Cannot load the model in {str(path)!r}: {error}") from error
    if tokenizer is None or isinstance(tokenizer, (str, os.PathLike)):
        tokenizer_dir = Path(tokenizer) if tokenizer is not None else path
        if not any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
            raise ExportError(
                f"No tokenizer in {str(tokenizer_dir)!r}: CTranslate2 needs the model's vocabulary; pass the folder "
                "of the tokenizer the model was trained with (--tokenizer DIR, e.g. outputs/main-job/tokenizer)."
            )
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------------------------------
# The specification
# ---------------------------------------------------------------------------------------------------------------------
def _array(tensor: torch.Tensor):
    # float32 on the CPU: ctranslate2 reads numpy arrays, numpy has no bfloat16, and `quantization=` decides the
    # stored type afterwards. A copy: ctranslate2 quantizes to int8 in place, which would rewrite the model's own
    # weights through an array that shares their memory.
    return tensor.detach().to(device="cpu", dtype=torch.float32, copy=True).numpy()


def _set_linear(spec: common_spec.LinearSpec, module: nn.Linear) -> None:
    # nn.Linear's weight is (out_features, in_features), the layout CTranslate2 expects.
    spec.weight = _array(module.weight)
    if module.bias is not None:
        spec.bias = _array(module.bias)


def _set_layer_norm(spec: common_spec.LayerNormSpec, module: nn.LayerNorm) -> None:
    spec.gamma = _array(module.weight)
    spec.beta = _array(module.bias)


def _set_embeddings(spec, embeddings_spec: common_spec.EmbeddingsSpec, embeddings) -> None:
    """Token embeddings, their scale and the position table of one stack (`embeddings` is a VaswaniEmbeddings)."""
    embeddings_spec.weight = _array(embeddings.embed_tokens.weight)
    # A number, not True: True would mean sqrt(depth) too, but the value we multiply by is stated, not implied.
    spec.scale_embeddings = float(embeddings.scale)
    positions = embeddings.embed_positions
    # Row p is position p for both models (CTranslate2 starts at 0, as we do; fairseq's table would need an offset).
    # Set even for sinusoids: CTranslate2's own table concatenates sines and cosines, ours interleaves them.
    table = positions.table if isinstance(positions, VaswaniSinusoidalPositions) else positions.weight
    spec.position_encodings.encodings = _array(table)


def _set_attention(spec, attention, self_attention: bool) -> None:
    # Our fused self-attention weight stacks W^Q, W^K, W^V as nn.MultiheadAttention.in_proj_weight does, which is
    # CTranslate2's fused linear[0]; cross-attention keeps queries apart and fuses keys and values, as CTranslate2's
    # linear[0] (queries) and linear[1] (keys and values over the encoder output). The last linear is W^O.
    if self_attention:
        _set_linear(spec.linear[0], attention.qkv_proj)
    else:
        _set_linear(spec.linear[0], attention.q_proj)
        _set_linear(spec.linear[1], attention.kv_proj)
    _set_linear(spec.linear[-1], attention.out_proj)


def _set_ffn(spec, layer) -> None:
    _set_layer_norm(spec.layer_norm, layer.ffn_sublayer.norm)
    _set_linear(spec.linear_0, layer.ffn.fc1)
    _set_linear(spec.linear_1, layer.ffn.fc2)


def vocabulary(tokenizer: PreTrainedTokenizerBase | None, config: VaswaniConfig) -> list[str]:
    """The tokenizer's tokens in id order, one per row of the embedding matrix.

    Without a tokenizer, placeholders: "<pad>", "<s>" and "</s>" at the config's ids of those tokens, "<id_N>" for
    every other id N. Such a model decodes from token ids only (e.g. to measure speed); it cannot translate text.

    Raises:
        ExportError: if the tokenizer's size is not the model's `vocab_size`, or an id has no token or shares it with
            another id (CTranslate2 looks tokens up by string, so each must be unique).
    """
    if tokenizer is None:
        tokens = [f"<id_{index}>" for index in range(config.vocab_size)]
        for name, index in (
            ("<pad>", config.pad_token_id),
            ("<s>", config.bos_token_id),
            ("</s>", config.eos_token_id),
        ):
            tokens[index] = name
        return tokens
    if len(tokenizer) != config.vocab_size:
        raise ExportError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {config.vocab_size}: "
            "CTranslate2 needs exactly one token string per embedding row. Pass the tokenizer the model was trained "
            "with."
        )
    tokens = tokenizer.convert_ids_to_tokens(list(range(config.vocab_size)))
    missing = [index for index, token in enumerate(tokens) if token is None]
    if missing:
        raise ExportError(f"The tokenizer has no token for ids {missing[:10]}: its vocabulary has holes.")
    if len(set(tokens)) != len(tokens):
        seen: set[str] = set()
        duplicates = sorted({token for token in tokens if token in seen or seen.add(token)})
        raise ExportError(
            f"The tokenizer maps several ids to the same token(s) {duplicates[:10]}: CTranslate2 reads tokens as "
            "strings and could not tell them apart."
        )
    return tokens


def build_transformer_spec(
    model: VaswaniForConditionalGeneration, tokenizer: PreTrainedTokenizerBase | None
) -> transformer_spec.TransformerSpec:
    """A `ctranslate2.specs.TransformerSpec` holding `model`'s weights and `tokenizer`'s vocabulary (placeholders
    without one, see `vocabulary`), ready for `validate()`, `optimize()` and `save()` (which
    `VaswaniConverter.convert` runs).

    Raises:
        ExportError: if `model` is not a VaswaniForConditionalGeneration or `tokenizer` does not fit it.
    """
    if not isinstance(model, VaswaniForConditionalGeneration):
        raise ExportError(
            f"Expected a VaswaniForConditionalGeneration, got {type(model).__name__}: CTranslate2 needs the output "
            "projection too (VaswaniModel has none)."
        )
    config = model.config
    tokens = vocabulary(tokenizer, config)

    # Our model has one head count for both stacks and ReLU feed-forward networks (Eq. 2). Pre-norm stacks end with a
    # LayerNorm in both models (no_final_norm=False); post-norm stacks have none in either.
    spec = transformer_spec.TransformerSpec.from_config(
        (config.encoder_layers, config.decoder_layers),
        config.num_heads,
        pre_norm=config.norm_first,
        activation=common_spec.Activation.RELU,
    )
    encoder, decoder = model.model.encoder, model.model.decoder

    _set_embeddings(spec.encoder, spec.encoder.embeddings[0], encoder.embeddings)
    for layer_spec, layer in zip(spec.encoder.layer, encoder.layers, strict=True):
        _set_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _set_layer_norm(layer_spec.self_attention.layer_norm, layer.self_attn_sublayer.norm)
        _set_ffn(layer_spec.ffn, layer)
    if encoder.final_norm is not None:
        _set_layer_norm(spec.encoder.layer_norm, encoder.final_norm)

    # Shared matrices are written once: ctranslate2's optimize() aliases variables with equal values.
    _set_embeddings(spec.decoder, spec.decoder.embeddings, decoder.embeddings)
    for layer_spec, layer in zip(spec.decoder.layer, decoder.layers, strict=True):
        _set_attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _set_layer_norm(layer_spec.self_attention.layer_norm, layer.self_attn_sublayer.norm)
        _set_attention(layer_spec.attention, layer.encoder_attn, self_attention=False)
        _set_layer_norm(layer_spec.attention.layer_norm, layer.encoder_attn_sublayer.norm)
        _set_ffn(layer_spec.ffn, layer)
    if decoder.final_norm is not None:
        _set_layer_norm(spec.decoder.layer_norm, decoder.final_norm)
    # lm_head has no bias (§3.4: the transposed embedding matrix alone); the spec's bias stays unset.
    _set_linear(spec.decoder.projection, model.lm_head)

    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    spec.config.layer_norm_epsilon = float(config.layer_norm_eps)
    if tokenizer is not None and tokenizer.unk_token is not None:
        # CTranslate2 maps strings outside the vocabulary to it, as our tokenizer maps unknown characters.
        spec.config.unk_token = tokenizer.unk_token
    spec.config.bos_token = tokens[config.bos_token_id]
    spec.config.eos_token = tokens[config.eos_token_id]
    spec.config.decoder_start_token = tokens[config.decoder_start_token_id]
    # Our tokenizer ends every source with </s> itself (and never starts one with <s>): sources reach CTranslate2 as
    # the tokens of those ids, so CTranslate2 must add nothing.
    spec.config.add_source_bos = False
    spec.config.add_source_eos = False
    return spec


# ---------------------------------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------------------------------
class VaswaniConverter(Converter):
    """Converts a VaswaniForConditionalGeneration, given as a saved folder or in memory, to CTranslate2.

    `convert(output_dir, quantization=None, force=False)` is ctranslate2's: it quantizes the weights (`int8`,
    `int8_float32`, `int8_float16`, `int8_bfloat16`, `int16`, `float16`, `bfloat16`, `float32`; None keeps float32),
    replaces `output_dir` when `force` is set, and writes model.bin, config.json and shared_vocabulary.json. This class
    also saves the tokenizer and `vaswani_export.json` (the number of positions) into `output_dir`, so that the
    folder is all `CTranslate2Translator` needs. A folder is loaded by `convert` after the output folder has been
    checked; `model` and `tokenizer` hold what was converted. An in-memory model without a tokenizer gets placeholder
    tokens (see `vocabulary`): it decodes from token ids, not text.
    """

    def __init__(
        self,
        model: VaswaniForConditionalGeneration | str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer

    def _load(self) -> transformer_spec.TransformerSpec:
        # Called by Converter.convert after its output-folder check, so a refused conversion loads nothing.
        if isinstance(self.model, (str, os.PathLike)):
            self.model, self.tokenizer = load_model_and_tokenizer(self.model, self.tokenizer)
        elif isinstance(self.tokenizer, (str, os.PathLike)):
            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        return build_transformer_spec(self.model, self.tokenizer)

    def convert(
        self,
        output_dir: str | os.PathLike,
        vmap: str | None = None,
        quantization: str | None = None,
        force: bool = False,
    ) -> str:
        """Writes the CTranslate2 model, the tokenizer and `vaswani_export.json` to `output_dir` and returns it.

        Raises:
            ExportError: if `output_dir` exists and `force` is not set, if `output_dir` is or contains the model
                folder (`force` deletes `output_dir` first), or if the model or its tokenizer cannot be exported.
        """
        output_dir = os.fspath(output_dir)
        if isinstance(self.model, (str, os.PathLike)):
            source, target = Path(self.model).resolve(), Path(output_dir).resolve()
            if source == target or target in source.parents:
                raise ExportError(
                    f"The output folder {output_dir!r} is or contains the model folder {os.fspath(self.model)!r}, "
                    "which the conversion would delete: choose another output folder."
                )
        # ctranslate2 refuses too, with a RuntimeError; this one names the option and loads nothing first.
        if os.path.exists(output_dir) and not force:
            raise ExportError(
                f"The output folder {output_dir!r} already exists: choose a new one, or pass --force (force=True) to "
                "replace it."
            )
        output_dir = super().convert(output_dir, vmap=vmap, quantization=quantization, force=force)
        if self.tokenizer is not None:
            # tokenizer.json and tokenizer_config.json do not clash with CTranslate2's files.
            self.tokenizer.save_pretrained(output_dir)
        # CTranslate2 keeps the number of positions inside model.bin; `CTranslate2Translator` needs it to cap output
        # lengths as `generate()` does.
        info = {"max_position_embeddings": self.model.config.max_position_embeddings}
        Path(output_dir, EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return output_dir


def convert_to_ctranslate2(
    model: VaswaniForConditionalGeneration | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None,
    quantization: str | None = None,
    force: bool = False,
) -> str:
    """Converts `model` (a saved folder, or a model in memory and its `tokenizer`) to a CTranslate2 folder; returns
    `output_dir`. See `VaswaniConverter`."""
    return VaswaniConverter(model, tokenizer).convert(output_dir, quantization=quantization, force=force)
