"""The attention weights of a translation, collected per layer and head and drawn as heatmaps.

The model attends in three ways (§3.2.3): encoder self-attention (every source position to every source position),
masked decoder self-attention (every target position to itself and the positions before it) and encoder-decoder
attention (every target position to every source position). `compute_attention_maps` runs the model once with
teacher forcing over each source sentence and its target (the model's own translation when none is given) and returns
the weights of all three, cropped to each sentence's real tokens; `plot_attention_maps` draws one PNG per kind and
layer with one panel per head, and the last layer's encoder-decoder attention averaged over its heads, the closest
thing the model has to a word alignment.

Decoder position t reads target token t - 1 (`<s>` at t = 0) and predicts target token t, so the decoder's query
rows are labelled with the token each position predicts and its key columns with the token each position reads.

A recurrent encoder-decoder (`RNNForConditionalGeneration` with attention) has only the third kind: its maps hold
the encoder-decoder attention, and the two self-attention kinds are None.

Only the eager attention kernel returns weights (sdpa and flash never form them): load the model with
`attn_implementation="eager"`, as `load_model` does. Shape legend: N layers, H heads, S source tokens, T target
tokens (the final `</s>` included), B batch.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .plotting import new_figure, save_png

# Kind -> (title, query axis label, key axis label).
KINDS = {
    "encoder": ("encoder self-attention", "source (query)", "source (key)"),
    "decoder": ("masked decoder self-attention", "predicting (query)", "reading (key)"),
    "cross": ("encoder-decoder attention", "predicting (query)", "source (key)"),
}
ALIGNMENT_FILE = "alignment.png"


@dataclass
class AttentionMaps:
    """The attention weights of one sentence pair, real tokens only (no padding)."""

    source_tokens: list[str]  # S: the source as the encoder reads it, ending with </s>
    decoder_inputs: list[str]  # T: what each decoder position reads: <s>, y_1, ..., y_{T-1}
    decoder_outputs: list[str]  # T: what each decoder position predicts: y_1, ..., y_T (</s>)
    translation: str  # the target as text, special tokens dropped
    encoder: torch.Tensor | None  # (N_enc, H, S, S); None for a model without self-attention
    decoder: torch.Tensor | None  # (N_dec, H, T, T); None for a model without self-attention
    cross: torch.Tensor  # (N_dec, H, T, S)

    def weights(self, kind: str) -> torch.Tensor | None:
        """The weights of one kind of `KINDS`, (N, H, queries, keys), or None where the model has no such kind."""
        return getattr(self, kind)

    def axis_tokens(self, kind: str) -> tuple[list[str], list[str]]:
        """The tokens along the query and key axes of one kind."""
        queries = self.source_tokens if kind == "encoder" else self.decoder_outputs
        keys = self.decoder_inputs if kind == "decoder" else self.source_tokens
        return queries, keys

    def alignment(self) -> torch.Tensor:
        """The last decoder layer's encoder-decoder attention averaged over heads, (T, S); each row sums to 1."""
        return self.cross[-1].mean(0)  # (H, T, S) -> (T, S)


def load_model(
    model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved model with the eager attention kernel, in eval mode on `device`, and its tokenizer (from
    `tokenizer_dir`, else from `model_dir`).

    Raises:
        FileNotFoundError: if `model_dir` holds no saved model or no tokenizer is found.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{str(model_dir)!r} is not a saved model: it has no config.json")
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else model_dir
    if not any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"No tokenizer in {str(tokenizer_dir)!r} (no tokenizer.json or tokenizer_config.json); "
            "name the folder of the model's tokenizer"
        )
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, attn_implementation="eager").to(device).eval()
    return model, AutoTokenizer.from_pretrained(tokenizer_dir)


def attention_weights(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    decoder_input_ids: torch.Tensor,
    decoder_attention_mask: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The attention weights of one teacher-forced forward pass, padding included, on the CPU in float32:
    {"encoder": (B, N, H, S, S), "decoder": (B, N, H, T, T), "cross": (B, N, H, T, S)}, each kind the model returns.

    Padded keys get weight 0; the rows of padded queries are meaningless and `compute_attention_maps` drops them.

    Raises:
        ValueError: if the model returns no encoder-decoder attention (a recurrent model with `attention="none"`).
    """
    with torch.no_grad():
        outputs = model(
            input_ids=input_ids.to(model.device),
            attention_mask=attention_mask.to(model.device),
            decoder_input_ids=decoder_input_ids.to(model.device),
            decoder_attention_mask=decoder_attention_mask.to(model.device),
            output_attentions=True,
            use_cache=False,
        )
    recorded = {
        "encoder": outputs.encoder_attentions,
        "decoder": outputs.decoder_attentions,
        "cross": outputs.cross_attentions,
    }
    if not recorded["cross"]:
        raise ValueError(
            f"{type(model).__name__} returns no encoder-decoder attention: it does not attend to the source "
            "(a recurrent model with attention='none' reads only the encoder's final state)"
        )
    # N tensors of (B, H, queries, keys) -> (B, N, H, queries, keys)
    return {kind: torch.stack(layers, dim=1).float().cpu() for kind, layers in recorded.items() if layers}


def compute_attention_maps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sources: list[str],
    targets: list[str] | None = None,
    **generate_kwargs,
) -> list[AttentionMaps]:
    """The attention weights of each source sentence with its target, as one padded batch.

    Without `targets` each target is the model's translation, `model.generate(**generate_kwargs)` (the saved
    generation config, the paper's beam 4, unless overridden); running the decoder again over it with teacher forcing
    gives the same weights as the step-by-step decoding that chose it. A given target is tokenized as a label
    (`text_target`), ending with `</s>`.

    Raises:
        ValueError: if the model does not return attention weights (not the eager kernel) or is in training mode, if a
            sentence is empty, or if a sentence is longer than the model's `max_position_embeddings`.
        TypeError: if `sources` or `targets` is a single string instead of a list of sentences.
    """
    if model.config._attn_implementation != "eager":
        raise ValueError(
            f"Only the eager attention kernel returns attention weights, this model runs "
            f"{model.config._attn_implementation!r}: load it with attn_implementation='eager' (or load_model)"
        )
    if model.training:
        raise ValueError("The model is in training mode, where dropout changes the weights: call model.eval() first")
    _check_sentences(sources, "source")
    if targets is not None:
        _check_sentences(targets, "target")
        if len(targets) != len(sources):
            raise ValueError(f"{len(sources)} source sentences but {len(targets)} targets")

    source = tokenizer(sources, padding=True, return_tensors="pt")
    source_lengths = source.attention_mask.sum(-1)  # (B,)
    max_positions = getattr(model.config, "max_position_embeddings", None)
    _check_lengths(source_lengths, max_positions, "source", sources)

    if targets is None:
        sequences = model.generate(
            input_ids=source.input_ids.to(model.device),
            attention_mask=source.attention_mask.to(model.device),
            **generate_kwargs,
        ).cpu()  # (B, 1 + T): <s> y_1 ... y_T
        outputs = sequences[:, 1:]  # (B, T)
        # Everything up to the first </s> is the translation, the rest padding (a sentence that hit the length limit
        # has no </s> and is all real).
        is_eos = outputs == model.config.eos_token_id
        outputs_mask = (is_eos.cumsum(-1) - is_eos.long()) == 0  # (B, T): True up to and including the first </s>
    else:
        labels = tokenizer(text_target=targets, padding=True, return_tensors="pt")
        outputs, outputs_mask = labels.input_ids, labels.attention_mask.bool()  # (B, T) each
        start = outputs.new_full((len(targets), 1), model.config.decoder_start_token_id)
        sequences = torch.cat([start, outputs], dim=1)  # (B, 1 + T): <s> y_1 ... y_T
        # The decoder reads T positions (generate keeps its own output within them).
        _check_lengths(outputs_mask.sum(-1), max_positions, "target", targets)
    target_lengths = outputs_mask.sum(-1)  # (B,)

    # Decoder position t reads sequences[t] and predicts outputs[t]: it is real when outputs[t] is.
    weights = attention_weights(model, source.input_ids, source.attention_mask, sequences[:, :-1], outputs_mask.long())
    maps = []
    for b, (s, t) in enumerate(zip(source_lengths.tolist(), target_lengths.tolist(), strict=True)):
        maps.append(
            AttentionMaps(
                source_tokens=tokenizer.convert_ids_to_tokens(source.input_ids[b, :s].tolist()),
                decoder_inputs=tokenizer.convert_ids_to_tokens(sequences[b, :t].tolist()),
                decoder_outputs=tokenizer.convert_ids_to_tokens(outputs[b, :t].tolist()),
                translation=tokenizer.decode(outputs[b, :t], skip_special_tokens=True),
                encoder=weights["encoder"][b, :, :, :s, :s] if "encoder" in weights else None,  # (N, H, S, S)
                decoder=weights["decoder"][b, :, :, :t, :t] if "decoder" in weights else None,  # (N, H, T, T)
                cross=weights["cross"][b, :, :, :t, :s],  # (N, H, T, S)
            )
        )
    return maps


def plot_attention_maps(maps: AttentionMaps, out_dir: str | os.PathLike, dpi: int = 100) -> list[Path]:
    """Draws `maps` into `out_dir`: `{kind}_layer{n}.png` for each kind of `KINDS` the model has and layer n (from 1),
    one panel per head, and `alignment.png`, the last layer's encoder-decoder attention averaged over heads. Every panel uses
    the same colour scale, 0 to 1. Returns the paths written.

    Raises:
        ImportError: naming `pip install "vaswani_hf[plots]"` when matplotlib is not installed.
    """
    out_dir = Path(out_dir)
    paths = []
    for kind, (title, query_label, key_label) in KINDS.items():
        weights = maps.weights(kind)  # (N, H, queries, keys)
        if weights is None:
            continue
        queries, keys = maps.axis_tokens(kind)
        for layer, heads in enumerate(weights, start=1):
            panels = [(f"head {h}", head) for h, head in enumerate(heads, start=1)]
            figure = _heatmaps(panels, queries, keys, query_label, key_label)
            figure.suptitle(f"{title}, layer {layer} of {len(weights)}")
            paths.append(save_png(figure, out_dir / f"{kind}_layer{layer}.png", dpi=dpi, bbox_inches="tight"))

    queries, keys = maps.axis_tokens("cross")
    panel_title = f"layer {len(maps.cross)}, mean of {maps.cross.shape[1]} heads"
    figure = _heatmaps([(panel_title, maps.alignment())], queries, keys, *KINDS["cross"][1:])
    figure.suptitle(KINDS["cross"][0])
    paths.append(save_png(figure, out_dir / ALIGNMENT_FILE, dpi=dpi, bbox_inches="tight"))
    return paths


def _heatmaps(panels: list[tuple[str, torch.Tensor]], queries: list[str], keys: list[str], query_label, key_label):
    """A figure of (title, (queries, keys) weights) heatmaps, up to 4 a row, tokens on the axes, one colour bar."""
    columns = min(len(panels), 4)
    rows = -(-len(panels) // columns)
    # About a quarter of an inch per token, so that the labels do not overlap; at least 2 inches a panel.
    width, height = max(2.0, 0.25 * len(keys)), max(2.0, 0.25 * len(queries))
    figure = new_figure(figsize=(columns * (width + 1.2) + 0.8, rows * (height + 1.2)), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for i, (axis, (title, weights)) in enumerate(zip(axes.flat, panels, strict=False)):
        image = axis.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
        axis.set_title(title, fontsize=9)
        axis.set_xticks(range(len(keys)), keys, rotation=90, fontsize=8)
        axis.set_yticks(range(len(queries)), queries, fontsize=8)
        axis.set_xlabel(key_label, fontsize=8)
        if i % columns == 0:
            axis.set_ylabel(query_label, fontsize=8)
    for axis in axes.flat[len(panels) :]:
        axis.set_visible(False)
    figure.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    return figure


def _check_sentences(sentences: list[str], what: str) -> None:
    if isinstance(sentences, str):
        raise TypeError(f"Pass the {what} sentences as a list, not a single str; wrap it in a list")
    if not sentences:
        raise ValueError(f"No {what} sentence given")
    for i, sentence in enumerate(sentences):
        if not isinstance(sentence, str) or not sentence.strip():
            raise ValueError(f"The {what} sentence at index {i} is empty: {sentence!r}")


def _check_lengths(lengths: torch.Tensor, max_positions: int | None, what: str, sentences: list[str]) -> None:
    if max_positions is None:  # a recurrent model takes any length
        return
    for i, length in enumerate(lengths.tolist()):
        if length > max_positions:
            raise ValueError(
                f"The {what} at index {i} ({sentences[i][:40]!r}...) has {length} tokens, more than the model's "
                f"max_position_embeddings={max_positions}: shorten it"
            )
