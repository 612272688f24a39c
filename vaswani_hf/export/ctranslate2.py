"""Export to CTranslate2 (https://github.com/OpenNMT/CTranslate2), a C++ inference engine for Transformers.

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

`CTranslate2Translator` decodes with a converted folder from token ids (`generate_ids`) or text (`translate`), with
options named and counted like `VaswaniForConditionalGeneration.generate`'s; `compare_greedy` checks that its greedy
translations are ours.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

try:
    import ctranslate2
    from ctranslate2.converters import Converter
    from ctranslate2.specs import common_spec, transformer_spec
except ImportError as error:  # pragma: no cover - depends on the environment
    # The cause stays in the message: it tells a missing package from an installed one that fails to load.
    raise ImportError(
        f"The CTranslate2 export needs the ctranslate2 package, which cannot be imported ({error}): install it with "
        "pip install 'vaswani_hf[ctranslate2]'"
    ) from error

from ..configuration_vaswani import VaswaniConfig
from ..data.batching import length_batches, pad_ids
from ..evaluation import check_sentences, encode_sentences
from ..modeling_vaswani import VaswaniForConditionalGeneration, VaswaniSinusoidalPositions

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


# ---------------------------------------------------------------------------------------------------------------------
# Decoding with a converted model
# ---------------------------------------------------------------------------------------------------------------------
class CTranslate2Translator:
    """A converted folder loaded into a `ctranslate2.Translator`. Token ids map to the strings CTranslate2 reads
    through the folder's own vocabulary; our tokenizer (saved in the folder by the converter, or given) turns text
    into ids and back.

    Args:
        model_dir: a folder written by `VaswaniConverter` / `convert_to_ctranslate2`.
        tokenizer: the model's tokenizer; default: the one saved in `model_dir`, if any (without one, `translate`
            is refused and `generate_ids` works).
        device: "cpu", "cuda" or "auto".
        compute_type: "default" computes in the stored type; "int8", "float16", ... convert on load.
        intra_threads: threads per translation (0: CTranslate2's default, 4 or the number of cores).
        inter_threads: translations run in parallel (each with `intra_threads` threads).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "default",
        intra_threads: int = 0,
        inter_threads: int = 1,
    ):
        model_dir = Path(model_dir)
        if not (model_dir / "model.bin").is_file():
            raise ExportError(
                f"{str(model_dir)!r} holds no CTranslate2 model (model.bin): convert one first with "
                "vaswani-export-ct2 MODEL_DIR OUTPUT_DIR."
            )
        self.translator = ctranslate2.Translator(
            os.fspath(model_dir),
            device=device,
            compute_type=compute_type,
            intra_threads=intra_threads,
            inter_threads=inter_threads,
        )
        # One vocabulary for source and target, as the converter registers it.
        self.tokens: list[str] = json.loads((model_dir / "shared_vocabulary.json").read_text(encoding="utf-8"))
        self.token_ids = {token: index for index, token in enumerate(self.tokens)}
        # The token CTranslate2 stops at, as the converter wrote it.
        self.eos_token_id = self.token_ids[
            json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["eos_token"]
        ]
        info_file = model_dir / EXPORT_INFO_FILE
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        self.max_positions: int | None = info.get("max_position_embeddings")
        if tokenizer is None and (model_dir / "tokenizer_config.json").is_file():
            tokenizer = model_dir
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer: PreTrainedTokenizerBase | None = tokenizer

    def generate_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        num_beams: int = 1,
        length_penalty: float = 0.0,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        max_length_offset: int | None = 50,
        fixed_length: int | None = None,
        include_end_token: bool = False,
        max_batch_size: int = 0,
        batch_type: str = "examples",
    ) -> list[list[int]]:
        """Translates sources given as token ids, as our tokenizer makes them (ending with </s>, unpadded), and
        returns the generated ids of each: without the decoder start token <s>, and without the final </s> unless
        `include_end_token`.

        Output lengths, compared with `VaswaniForConditionalGeneration.generate`:

        - Every count is of generated tokens, the final </s> included when it is generated, <s> never. Our
          `max_new_tokens` / `min_new_tokens` and CTranslate2's `max_decoding_length` / `min_decoding_length` count
          the same way, so they are passed through unchanged; only the defaults differ (CTranslate2's minimum is 1,
          ours 0, so `min_new_tokens=0` is passed explicitly and a translation may end at once in both).
        - `max_new_tokens=N`: at most N tokens. A sentence that has not produced </s> after N tokens stops there,
          without </s>, in both.
        - `min_new_tokens=M`: </s> is forbidden for the first M tokens, so a translation has at least M tokens before
          its </s>.
        - `fixed_length=N`, for speed measurements: exactly N tokens for every sentence, none of them </s>, in N
          decoder steps, as `generate(min_new_tokens=N, max_new_tokens=N)`. The end token does not count: it can
          never be produced.
        - Neither `max_new_tokens` nor `fixed_length`: `generate()`'s default per-sentence limit (§6.1), source
          length (with its </s>) + `max_length_offset`, capped at the model's max_position_embeddings, where
          `generate()` forces </s> as the last token. CTranslate2 has one limit per call and cannot force a token, so
          sentences are decoded in groups of equal limit, with a limit one token lower, and </s> is added back to a
          translation that reaches it (with `include_end_token`). Greedy outputs are then `generate()`'s, with one
          decoder step fewer for sentences that reach the limit. In beam search, hypotheses that reach the limit are
          scored without the forced </s> (its log-probability and its length), so results can differ for sentences
          whose best hypotheses are that long; `max_new_tokens` avoids this.

        `num_beams > 1` is beam search. CTranslate2 divides a finished hypothesis' log-probability by
        `length ** length_penalty`, the length counting </s>: our `length_penalty_type="power"`, not the paper's GNMT
        penalty `((5 + length) / 6) ** alpha` that `generate()` applies by default, which CTranslate2 does not have.
        With `length_penalty=0` CTranslate2 stops a sentence once its best hypothesis has ended, and finds what
        `generate(length_penalty=0, early_stopping=False)` finds; with any other value it stops once `num_beams`
        hypotheses have ended, as `generate(length_penalty_type="power", early_stopping=True)`. Greedy search
        (`num_beams=1`) ignores `length_penalty`.

        CTranslate2 returns nothing for a source made of </s> alone (an empty sentence), where `generate()` still
        decodes; `translate` never sends blank sentences. Sources longer than the model's positions are an error in
        both (CTranslate2: "No position encodings are defined for positions >= ...").

        `max_batch_size` / `batch_type` ("examples" or "tokens") are CTranslate2's: it sorts the sources by length
        and decodes `max_batch_size` at a time (0: all at once).

        Raises:
            ValueError: if `fixed_length` is combined with `max_new_tokens` or `min_new_tokens`, or no limit is set.
        """
        sources = [[self.tokens[index] for index in ids] for ids in input_ids]
        options = dict(
            beam_size=num_beams,
            length_penalty=length_penalty,
            # Sources go in whole: CTranslate2 would otherwise cut them at 1024 tokens, dropping their </s>.
            max_input_length=0,
            return_end_token=include_end_token,
            max_batch_size=max_batch_size,
            batch_type=batch_type,
        )
        if fixed_length is not None:
            if max_new_tokens is not None or min_new_tokens:
                raise ValueError("fixed_length sets both limits: do not pass max_new_tokens or min_new_tokens with it")
            min_new_tokens = max_new_tokens = fixed_length
        if max_new_tokens is not None:
            limits = [max_new_tokens] * len(sources)
        elif max_length_offset is not None:
            limits = [len(source) + max_length_offset for source in sources]
            if self.max_positions is not None:
                limits = [min(limit, self.max_positions) for limit in limits]
            # One token fewer: generate() forces </s> as the limit-th token (added back below).
            limits = [limit - 1 for limit in limits]
        else:
            raise ValueError("Set an output limit: max_new_tokens, fixed_length or max_length_offset.")

        outputs: list[list[int]] = [[] for _ in sources]
        for limit in sorted(set(limits)):
            group = [index for index, value in enumerate(limits) if value == limit]
            if limit > 0:
                results = self.translator.translate_batch(
                    [sources[index] for index in group],
                    min_decoding_length=min_new_tokens,
                    max_decoding_length=limit,
                    **options,
                )
                for index, result in zip(group, results, strict=True):
                    outputs[index] = [self.token_ids[token] for token in result.hypotheses[0]]
        if include_end_token and max_new_tokens is None:
            for output in outputs:
                if not output or output[-1] != self.eos_token_id:
                    output.append(self.eos_token_id)
        return outputs

    def translate(self, texts: Sequence[str], **options) -> list[str]:
        """Translates sentences: our tokenizer encodes them (sources longer than the model's positions truncated,
        keeping their </s>), `generate_ids(**options)` decodes, and the tokenizer decodes the output without special
        tokens. A blank sentence gives "" without decoding, as `vaswani_hf.evaluation.translate` does.

        Raises:
            TypeError: if `texts` is a single str or holds something other than str.
            ExportError: if there is no tokenizer (a model converted without one decodes from ids only).
        """
        if self.tokenizer is None:
            raise ExportError(
                "This CTranslate2 model has no tokenizer, so it cannot read text: pass tokenizer=... or decode token "
                "ids with generate_ids()."
            )
        texts = check_sentences("texts", texts)
        translations = [""] * len(texts)
        todo = [index for index, text in enumerate(texts) if text.strip()]
        if not todo:
            return translations
        input_ids = encode_sentences([texts[index] for index in todo], self.tokenizer, self.max_positions)
        outputs = self.generate_ids(input_ids, **options)
        for index, text in zip(todo, self.tokenizer.batch_decode(outputs, skip_special_tokens=True), strict=True):
            translations[index] = text
        return translations


# ---------------------------------------------------------------------------------------------------------------------
# Parity with our model
# ---------------------------------------------------------------------------------------------------------------------
def generate_reference_ids(
    model: VaswaniForConditionalGeneration,
    input_ids: Sequence[Sequence[int]],
    *,
    max_tokens: int = 4096,
    **generate_kwargs,
) -> list[list[int]]:
    """`model.generate(**generate_kwargs)` over unpadded sources in length-sorted batches of at most `max_tokens`
    padded source tokens, returned as `CTranslate2Translator.generate_ids` returns its output: without <s>, cut
    before the first </s>, without padding."""
    eos, pad = model.config.eos_token_id, model.config.pad_token_id
    outputs: list[list[int]] = [[] for _ in input_ids]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in length_batches([len(ids) for ids in input_ids], max_tokens):
                inputs = pad_ids([list(input_ids[index]) for index in batch], pad, model.device)
                for index, row in zip(batch, model.generate(**inputs, **generate_kwargs).tolist(), strict=True):
                    row = row[1:]  # the decoder start token
                    # Only rows that ended are padded, after their </s>.
                    outputs[index] = row[: row.index(eos)] if eos in row else row
    finally:
        model.train(was_training)
    return outputs


def compare_greedy(
    model: VaswaniForConditionalGeneration,
    translator: CTranslate2Translator,
    sentences: Sequence[str],
    *,
    max_new_tokens: int | None = None,
    max_tokens: int = 4096,
) -> dict:
    """Greedy translations of `sentences` by `model.generate(num_beams=1)` and by the converted model, compared token
    for token, with the same output limit (`max_new_tokens`, else the per-sentence source length + 50).

    Returns a dict with `sentences`, `identical` (count), and `differences`: for each sentence that differs, its
    index, source, both translations, the first position where they part and, at that position after the common
    prefix, our model's log-probabilities of both tokens (`margin` = ours - CTranslate2's; a margin near 0 is a near
    tie that float rounding can flip).
    """
    tokenizer = translator.tokenizer
    if tokenizer is None:
        raise ExportError("compare_greedy translates text: give the CTranslate2Translator its tokenizer=...")
    texts = check_sentences("sentences", sentences)
    input_ids = encode_sentences(texts, tokenizer, model.config.max_position_embeddings)
    limit = dict(max_new_tokens=max_new_tokens) if max_new_tokens is not None else {}
    ours = generate_reference_ids(model, input_ids, max_tokens=max_tokens, num_beams=1, do_sample=False, **limit)
    theirs = translator.generate_ids(input_ids, num_beams=1, **limit)
    differences = []
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a == b:
            continue
        # Where they part: the first differing token, or </s> on the side that ended first.
        position = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        token_a = a[position] if position < len(a) else model.config.eos_token_id
        token_b = b[position] if position < len(b) else model.config.eos_token_id
        decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, *a[:position]]], device=model.device)
        with torch.inference_mode():
            logits = model(
                input_ids=torch.tensor([input_ids[index]], device=model.device), decoder_input_ids=decoder_input_ids
            ).logits
        log_probs = logits[0, -1].float().log_softmax(-1)
        differences.append(
            {
                "index": index,
                "source": texts[index],
                "ours": tokenizer.decode(a, skip_special_tokens=True),
                "ctranslate2": tokenizer.decode(b, skip_special_tokens=True),
                "position": position,
                "ours_token": translator.tokens[token_a],
                "ctranslate2_token": translator.tokens[token_b],
                "ours_log_prob": log_probs[token_a].item(),
                "ctranslate2_log_prob": log_probs[token_b].item(),
                "margin": (log_probs[token_a] - log_probs[token_b]).item(),
            }
        )
    return {"sentences": len(texts), "identical": len(texts) - len(differences), "differences": differences}
