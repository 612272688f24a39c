"""The same network as transformers' own `MarianMTModel`: a post-norm `VaswaniForConditionalGeneration` converted
weight for weight, so that it runs where only transformers' classes may, and so that benchmarks compare the two
implementations on one set of weights.

Marian is the paper's architecture too (post-norm sub-layers, sinusoidal positions, embeddings scaled by
sqrt(d_model), ReLU, one shared embedding matrix); two things are laid out differently:

- its sinusoid table puts the sines of all frequencies first and the cosines after them, where §3.5 (and this
  package) interleaves them: PE(pos, 2i) = sin, PE(pos, 2i + 1) = cos. Rather than overwrite Marian's table, the
  conversion reorders the d_model features of the whole residual stream the same way (feature 2i to i, 2i + 1 to
  d/2 + i): every matrix that reads the stream gets its columns reordered, every one that writes it its rows, and
  LayerNorm, acting feature by feature, its weight and bias. Scores, softmaxes and logits are unchanged, since each
  is a dot product over the stream or within the heads, which the reordering leaves alone.
- its attention projections are separate matrices, where this package fuses q, k and v (and k and v in cross
  attention) into one; they are split.

Pre-norm, learned positions and untied embeddings have no Marian equivalent and are refused
(`vaswani_hf.training.architectures.marian_config`). Decoding is not converted: Marian's beam search has only the
length penalty |Y| ** alpha, not the GNMT form the paper uses.
"""

from __future__ import annotations

import torch
from transformers import MarianMTModel

from ..modeling_vaswani import VaswaniForConditionalGeneration
from ..training.architectures import marian_config


def stream_order(d_model: int) -> torch.Tensor:
    """Marian's feature i is this package's feature `stream_order(d)[i]`: the even features (sines), then the odd ones
    (cosines)."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])  # (d,)


def to_marian(model: VaswaniForConditionalGeneration) -> MarianMTModel:
    """A `MarianMTModel` (eval mode, float32 or the model's dtype) that computes what `model` computes.

    Raises:
        ValueError: if `model` is not a VaswaniForConditionalGeneration, or its architecture has no Marian
            equivalent.
    """
    if not isinstance(model, VaswaniForConditionalGeneration):
        raise ValueError(f"to_marian converts a VaswaniForConditionalGeneration, got {type(model).__name__}")
    config = model.config
    marian = MarianMTModel(marian_config(config)).to(model.dtype)
    order = stream_order(config.d_model)
    source = model.state_dict()

    def reads(name: str) -> torch.Tensor:  # a matrix whose input is the stream: (out, d) -> columns reordered
        return source[name][:, order]

    def writes(name: str) -> torch.Tensor:  # a matrix or vector whose output is the stream: rows reordered
        return source[name][order]

    embedding = reads("model.encoder.embeddings.embed_tokens.weight")  # (V, d)
    state = {
        "model.shared.weight": embedding,
        "model.encoder.embed_tokens.weight": embedding,
        "model.decoder.embed_tokens.weight": embedding,
        "lm_head.weight": embedding,
        "final_logits_bias": torch.zeros(1, config.vocab_size, dtype=model.dtype),
    }
    stacks = (("encoder", config.encoder_layers), ("decoder", config.decoder_layers))
    for stack, layers in stacks:
        for i in range(layers):
            ours, theirs = f"model.{stack}.layers.{i}", f"model.{stack}.layers.{i}"
            # (3d, d) fused [W^Q; W^K; W^V] -> three (d, d); the heads' side keeps its order.
            for part, weight, bias in zip(
                ("q_proj", "k_proj", "v_proj"),
                reads(f"{ours}.self_attn.qkv_proj.weight").chunk(3, dim=0),
                source[f"{ours}.self_attn.qkv_proj.bias"].chunk(3, dim=0),
                strict=True,
            ):
                state[f"{theirs}.self_attn.{part}.weight"], state[f"{theirs}.self_attn.{part}.bias"] = weight, bias
            state[f"{theirs}.self_attn.out_proj.weight"] = writes(f"{ours}.self_attn.out_proj.weight")
            state[f"{theirs}.self_attn.out_proj.bias"] = writes(f"{ours}.self_attn.out_proj.bias")
            norms = [("self_attn_sublayer", "self_attn_layer_norm"), ("ffn_sublayer", "final_layer_norm")]
            if stack == "decoder":
                norms.append(("encoder_attn_sublayer", "encoder_attn_layer_norm"))
                state[f"{theirs}.encoder_attn.q_proj.weight"] = reads(f"{ours}.encoder_attn.q_proj.weight")
                state[f"{theirs}.encoder_attn.q_proj.bias"] = source[f"{ours}.encoder_attn.q_proj.bias"]
                for part, weight, bias in zip(
                    ("k_proj", "v_proj"),
                    reads(f"{ours}.encoder_attn.kv_proj.weight").chunk(2, dim=0),
                    source[f"{ours}.encoder_attn.kv_proj.bias"].chunk(2, dim=0),
                    strict=True,
                ):
                    state[f"{theirs}.encoder_attn.{part}.weight"] = weight
                    state[f"{theirs}.encoder_attn.{part}.bias"] = bias
                state[f"{theirs}.encoder_attn.out_proj.weight"] = writes(f"{ours}.encoder_attn.out_proj.weight")
                state[f"{theirs}.encoder_attn.out_proj.bias"] = writes(f"{ours}.encoder_attn.out_proj.bias")
            for our_norm, their_norm in norms:
                state[f"{theirs}.{their_norm}.weight"] = writes(f"{ours}.{our_norm}.norm.weight")
                state[f"{theirs}.{their_norm}.bias"] = writes(f"{ours}.{our_norm}.norm.bias")
            state[f"{theirs}.fc1.weight"] = reads(f"{ours}.ffn.fc1.weight")
            state[f"{theirs}.fc1.bias"] = source[f"{ours}.ffn.fc1.bias"]
            state[f"{theirs}.fc2.weight"] = writes(f"{ours}.ffn.fc2.weight")
            state[f"{theirs}.fc2.bias"] = writes(f"{ours}.ffn.fc2.bias")

    missing, unexpected = marian.load_state_dict(state, strict=False)
    # Marian builds its sinusoid tables itself; every other tensor must come from the conversion.
    missing = [key for key in missing if not key.endswith("embed_positions.weight")]
    if missing or unexpected:
        raise RuntimeError(
            f"the conversion to MarianMTModel does not fit transformers' Marian: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}"
        )
    return marian.eval()
