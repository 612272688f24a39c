"""Tests of the model itself: parity with torch.nn.Transformer, the paper's embeddings and positions, masking,
attention backends, half precision, gradient checkpointing, weight tying and saving, the loss, and input checks."""

import copy
import json
import logging
import math
import os

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.modeling_vaswani import VaswaniDropout, VaswaniSinusoidalPositions
from vaswani_hf.transformers_adapter import output_cache

PAD, BOS, EOS = 0, 1, 2
ATTN = ["eager", "sdpa"]


def make_model(tiny_config, attn="eager", seed=0, **overrides) -> VaswaniForConditionalGeneration:
    """A tiny model in eval mode. `_from_config` stores the backend on the config it is given, so each call builds its
    own config."""
    torch.manual_seed(seed)
    return VaswaniForConditionalGeneration._from_config(tiny_config(**overrides), attn_implementation=attn).eval()


def twin(model: VaswaniForConditionalGeneration, attn: str) -> VaswaniForConditionalGeneration:
    """The same weights under another attention backend."""
    other = VaswaniForConditionalGeneration._from_config(copy.deepcopy(model.config), attn_implementation=attn).eval()
    other.load_state_dict(model.state_dict())
    assert other.config._attn_implementation == attn
    return other


def source_batch(vocab_size=64, seed=1):
    """Three sources of lengths 7, 4 and 5, right-padded with <pad> and marked 0 in the attention mask."""
    g = torch.Generator().manual_seed(seed)
    attention_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 5 + [0] * 2])
    input_ids = torch.randint(3, vocab_size, (3, 7), generator=g).masked_fill(attention_mask == 0, PAD)
    return input_ids, attention_mask


def decoder_batch(vocab_size=64, seed=2, padded=False):
    """Three decoder inputs of width 6 starting with <s>. With `padded`, row 1 is right-padded (4 tokens) and row 2 is
    left-padded (2 leading pads): its first two query positions see no key at all under the causal mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (3, 6), generator=g)
    ids[:, 0] = BOS
    if not padded:
        return ids, None
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [0] * 2 + [1] * 4])
    ids[2, 2] = BOS
    return ids.masked_fill(mask == 0, PAD), mask


def visible_queries(decoder_attention_mask):
    """Decoder positions whose causal window holds at least one real token; the others (leading pads) are fully
    masked query rows whose output no backend defines the same way and no real position reads."""
    return decoder_attention_mask.cumsum(-1) > 0


# ---------------------------------------------------------------------------------------------------------------------
# 1. Parity with torch.nn.Transformer
# ---------------------------------------------------------------------------------------------------------------------
def to_torch_transformer(model: VaswaniForConditionalGeneration) -> nn.Transformer:
    """nn.Transformer with our weights. Post-norm nn.Transformer still closes each stack with a LayerNorm, which the
    paper (and our post-norm model) does not have: it is replaced by the identity. Pre-norm maps it onto our
    final_norm."""
    c = model.config
    sizes = dict(
        d_model=c.d_model,
        nhead=c.num_heads,
        dim_feedforward=c.d_ff,
        dropout=0.0,
        activation="relu",
        layer_norm_eps=c.layer_norm_eps,
        batch_first=True,
        norm_first=c.norm_first,
    )
    # The encoder is built here only to switch off its nested-tensor fast path (a prototype that warns).
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(**sizes),
        c.encoder_layers,
        norm=nn.LayerNorm(c.d_model, eps=c.layer_norm_eps),
        enable_nested_tensor=False,
    )
    ref = nn.Transformer(num_decoder_layers=c.decoder_layers, custom_encoder=encoder, **sizes)
    ours = model.model

    def linear(dst: nn.Module, src: nn.Linear):
        dst.weight.copy_(src.weight)
        dst.bias.copy_(src.bias)

    def mha(dst: nn.MultiheadAttention, src):
        if src.is_cross_attention:
            dst.in_proj_weight.copy_(torch.cat([src.q_proj.weight, src.kv_proj.weight]))
            dst.in_proj_bias.copy_(torch.cat([src.q_proj.bias, src.kv_proj.bias]))
        else:
            dst.in_proj_weight.copy_(src.qkv_proj.weight)
            dst.in_proj_bias.copy_(src.qkv_proj.bias)
        linear(dst.out_proj, src.out_proj)

    with torch.no_grad():
        for dst, src in zip(ref.encoder.layers, ours.encoder.layers, strict=True):
            mha(dst.self_attn, src.self_attn)
            linear(dst.linear1, src.ffn.fc1)
            linear(dst.linear2, src.ffn.fc2)
            linear(dst.norm1, src.self_attn_sublayer.norm)
            linear(dst.norm2, src.ffn_sublayer.norm)
        for dst, src in zip(ref.decoder.layers, ours.decoder.layers, strict=True):
            mha(dst.self_attn, src.self_attn)
            mha(dst.multihead_attn, src.encoder_attn)
            linear(dst.linear1, src.ffn.fc1)
            linear(dst.linear2, src.ffn.fc2)
            linear(dst.norm1, src.self_attn_sublayer.norm)
            linear(dst.norm2, src.encoder_attn_sublayer.norm)
            linear(dst.norm3, src.ffn_sublayer.norm)
        if c.norm_first:
            linear(ref.encoder.norm, ours.encoder.final_norm)
            linear(ref.decoder.norm, ours.decoder.final_norm)
        else:
            ref.encoder.norm = nn.Identity()
            ref.decoder.norm = nn.Identity()
    return ref.eval()


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("attn", ATTN)
def test_matches_torch_nn_transformer(tiny_config, attn, norm_first):
    model = make_model(tiny_config, attn, norm_first=norm_first)
    ref = to_torch_transformer(model)
    input_ids, attention_mask = source_batch()
    decoder_input_ids, _ = decoder_batch()
    key_padding_mask = attention_mask == 0  # True where nn.MultiheadAttention must not look
    causal = nn.Transformer.generate_square_subsequent_mask(decoder_input_ids.shape[1])

    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        src = model.model.encoder.embeddings(input_ids, None)
        tgt = model.model.decoder.embeddings(decoder_input_ids, None)
        memory = ref.encoder(src, src_key_padding_mask=key_padding_mask)
        decoded = ref.decoder(
            tgt, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=key_padding_mask
        )

    real = attention_mask.bool()  # what a padded position holds is left to each implementation
    torch.testing.assert_close(out.encoder_last_hidden_state[real], memory[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        model.model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        ).last_hidden_state,
        decoded,
        atol=1e-5,
        rtol=0,
    )
    # The pre-softmax projection is the transposed embedding matrix (§3.4), without a bias.
    torch.testing.assert_close(
        out.logits, decoded @ model.model.encoder.embeddings.embed_tokens.weight.T, atol=1e-5, rtol=0
    )


# ---------------------------------------------------------------------------------------------------------------------
# 2. Embeddings and sinusoidal positions (§3.4, §3.5)
# ---------------------------------------------------------------------------------------------------------------------
def paper_positional_encoding(num_positions: int, d_model: int) -> torch.Tensor:
    """§3.5 written out entry by entry: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same)."""
    table = torch.empty(num_positions, d_model, dtype=torch.float64)
    for pos in range(num_positions):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            table[pos, 2 * i] = math.sin(angle)
            table[pos, 2 * i + 1] = math.cos(angle)
    return table


@pytest.mark.parametrize("num_positions, d_model", [(50, 16), (128, 32), (7, 2)])
def test_sinusoidal_table_is_the_papers_formula(num_positions, d_model):
    table = VaswaniSinusoidalPositions.create_table(num_positions, d_model)
    assert table.shape == (num_positions, d_model) and table.dtype == torch.float32
    torch.testing.assert_close(table.double(), paper_positional_encoding(num_positions, d_model), atol=1e-6, rtol=0)


def test_embeddings_are_scaled_token_embeddings_plus_positions(tiny_config):
    model = make_model(tiny_config, d_model=32)
    embeddings = model.model.encoder.embeddings
    table = paper_positional_encoding(32, 32).float()
    torch.testing.assert_close(embeddings.embed_positions.table, table, atol=1e-6, rtol=0)
    input_ids, _ = source_batch()
    weight = embeddings.embed_tokens.weight
    with torch.no_grad():
        expected = weight[input_ids] * math.sqrt(32) + table[:7]
        torch.testing.assert_close(embeddings(input_ids, None), expected, atol=1e-5, rtol=0)
        # The decoder continues the positions after a cache of `offset` tokens.
        torch.testing.assert_close(
            model.model.decoder.embeddings(input_ids[:, :3], None, offset=5),
            weight[input_ids[:, :3]] * math.sqrt(32) + table[5:8],
            atol=1e-5,
            rtol=0,
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_residual_dropout_zeroes_p_of_the_inputs_and_scales_the_rest(dtype):
    """§5.4's dropout on a CPU (`VaswaniDropout`'s mask from random bits): a million ones come out as 0 at rate p (within
    five standard deviations, 0.0015) and as 1/(1-p) elsewhere; the gradient is the same mask; eval mode passes x on."""
    dropout = VaswaniDropout(0.1).train()
    x = torch.ones(1_000_000, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x)
    assert y.dtype == dtype
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.0015, dropped
    assert set(y.unique().tolist()) == {0.0, torch.tensor(1 / 0.9, dtype=dtype).item()}
    upstream = torch.randn(x.shape, dtype=dtype)
    y.backward(upstream)
    torch.testing.assert_close(x.grad, upstream * y.detach())
    torch.manual_seed(0)
    torch.testing.assert_close(dropout(x), y)  # the default generator's seed fixes the mask
    assert dropout.eval()(x) is x and VaswaniDropout(0.0).train()(x) is x


def test_gradient_checkpointing_redraws_the_same_dropout_masks(tiny_config):
    """With dropout on, a checkpointed layer recomputes its forward in the backward: it must draw the masks it drew
    the first time (torch.utils.checkpoint restores the generator), or its gradients would belong to another network."""
    plain = make_model(tiny_config, dropout=0.3).train()
    checkpointed = copy.deepcopy(plain)
    getattr(
        checkpointed, "activation_checkpointing_enable" if RENAMED_CHECKPOINTING else "gradient_checkpointing_enable"
    )()
    input_ids, attention_mask = source_batch()
    labels, _ = decoder_batch(seed=3)
    losses = []
    for model in (plain, checkpointed):
        torch.manual_seed(7)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=0)
    with torch.no_grad():  # other masks, another loss: the comparison above is not of two dropout-free passes
        assert abs(plain(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss - losses[0]) > 1e-3
    grads = dict(checkpointed.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(grads[name].grad, param.grad, atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# 3-5. Masking: causality, source padding, backends
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attn", ATTN)
def test_decoder_is_causal(tiny_config, attn):
    model = make_model(tiny_config, attn)
    input_ids, attention_mask = source_batch()
    decoder_input_ids, _ = decoder_batch()
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
        for t in range(decoder_input_ids.shape[1] - 1):
            changed = decoder_input_ids.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 7) % 60 + 3
            new = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=changed).logits
            torch.testing.assert_close(new[:, : t + 1], logits[:, : t + 1], atol=1e-5, rtol=0)
            assert (new[:, t + 1 :] - logits[:, t + 1 :]).abs().max() > 1e-3  # the later positions did see the change


@pytest.mark.parametrize("attn", ATTN)
def test_extra_source_padding_changes_nothing(tiny_config, attn):
    model = make_model(tiny_config, attn)
    input_ids, attention_mask = source_batch()
    decoder_input_ids, _ = decoder_batch()
    more_ids = F.pad(input_ids, (0, 5), value=PAD)
    more_mask = F.pad(attention_mask, (0, 5), value=0)
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
        padded = model(input_ids=more_ids, attention_mask=more_mask, decoder_input_ids=decoder_input_ids).logits
        # Without the mask the pads are attended to: the check above is not vacuous.
        unmasked = model(input_ids=more_ids, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(padded, logits, atol=1e-5, rtol=0)
    assert (unmasked - logits).abs().max() > 1e-3


@pytest.mark.parametrize("attn", ATTN)
def test_batched_rows_equal_rows_run_alone(tiny_config, attn):
    model = make_model(tiny_config, attn)
    input_ids, attention_mask = source_batch()
    decoder_input_ids, _ = decoder_batch()
    with torch.no_grad():
        batched = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
        for row in range(input_ids.shape[0]):
            length = int(attention_mask[row].sum())
            alone = model(
                input_ids=input_ids[row : row + 1, :length], decoder_input_ids=decoder_input_ids[row : row + 1]
            ).logits
            torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=0)


def test_eager_and_sdpa_agree_on_a_padded_batch(tiny_config):
    eager = make_model(tiny_config, "eager")
    sdpa = twin(eager, "sdpa")
    input_ids, attention_mask = source_batch()
    for padded in (False, True):
        decoder_input_ids, decoder_attention_mask = decoder_batch(padded=padded)
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
        )
        with torch.no_grad():
            a, b = eager(**kwargs), sdpa(**kwargs)
        real = attention_mask.bool()
        torch.testing.assert_close(
            a.encoder_last_hidden_state[real], b.encoder_last_hidden_state[real], atol=1e-5, rtol=0
        )
        if decoder_attention_mask is None:
            torch.testing.assert_close(a.logits, b.logits, atol=1e-5, rtol=0)
        else:
            visible = visible_queries(decoder_attention_mask)
            assert not visible.all()  # the left-padded row is in the batch
            torch.testing.assert_close(a.logits[visible], b.logits[visible], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# 6. Half precision
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 0.15), (torch.float16, 0.03)], ids=["bf16", "fp16"])
@pytest.mark.parametrize("attn", ATTN)
def test_half_precision_padded_batch_is_finite(tiny_config, attn, dtype, tolerance):
    full = make_model(tiny_config, attn, decoder_layers=3)
    input_ids, attention_mask = source_batch()
    decoder_input_ids, decoder_attention_mask = decoder_batch(padded=True)
    labels = decoder_input_ids.masked_fill(decoder_attention_mask == 0, -100)
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
        labels=labels,
    )
    with torch.no_grad():
        reference = full(**kwargs)
        try:
            half = copy.deepcopy(full).to(dtype)(**kwargs)
        except RuntimeError as error:  # pragma: no cover - depends on the CPU build
            if "not implemented for 'Half'" in str(error):
                pytest.skip(f"this CPU build of torch has no {dtype} kernel: {error}")
            raise
    assert half.logits.dtype == dtype
    assert torch.isfinite(half.logits).all(), torch.isfinite(half.logits).all(-1)
    assert torch.isfinite(half.encoder_last_hidden_state).all()
    assert torch.isfinite(half.loss)
    visible = visible_queries(decoder_attention_mask)
    torch.testing.assert_close(half.logits.float()[visible], reference.logits[visible], atol=tolerance, rtol=0)


@pytest.mark.parametrize("attn", ATTN)
def test_fp16_fully_masked_rows_with_large_scores_stay_finite(tiny_config, attn):
    """Sharpened decoder self-attention (scores far below -16) on a left-padded row, whose first queries see no
    key at all: the mask must be added in float32, else fp16 rounds the row to -inf and the NaN spreads."""
    model = make_model(tiny_config, attn, decoder_layers=3)
    d = model.config.d_model
    with torch.no_grad():
        for layer in model.model.decoder.layers:
            layer.self_attn.qkv_proj.weight[: 2 * d] *= 30  # the W^Q and W^K rows
    input_ids, attention_mask = source_batch()
    decoder_input_ids, decoder_attention_mask = decoder_batch(padded=True)
    with torch.no_grad():
        out = model.to(torch.float16)(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
        )
    assert torch.isfinite(out.logits).all(), torch.isfinite(out.logits).all(-1)


# ---------------------------------------------------------------------------------------------------------------------
# 7. Attention weights
# ---------------------------------------------------------------------------------------------------------------------
def test_output_attentions_shapes_and_masks(tiny_config):
    model = make_model(tiny_config, "eager", encoder_layers=2, decoder_layers=3)
    input_ids, attention_mask = source_batch()
    decoder_input_ids, _ = decoder_batch()
    (B, S), T, H = input_ids.shape, decoder_input_ids.shape[1], model.config.num_heads
    with torch.no_grad():
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            output_attentions=True,
        )
    groups = {
        "encoder": (out.encoder_attentions, 2, (B, H, S, S)),
        "decoder": (out.decoder_attentions, 3, (B, H, T, T)),
        "cross": (out.cross_attentions, 3, (B, H, T, S)),
    }
    for name, (weights, layers, shape) in groups.items():
        assert weights is not None and len(weights) == layers, name
        for w in weights:
            assert w.shape == shape, name
            torch.testing.assert_close(w.sum(-1), torch.ones(shape[:-1]), atol=1e-5, rtol=0)
            assert (w >= 0).all()
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    padded_keys = (attention_mask == 0)[:, None, None, :]  # (B, 1, 1, S)
    for w in out.decoder_attentions:
        assert (w[..., future] == 0).all()
        assert (w[..., ~future] > 0).all()
    for w in (*out.cross_attentions, *out.encoder_attentions):
        assert (w.masked_select(padded_keys) == 0).all()
        assert (w.masked_select(~padded_keys) > 0).all()


# ---------------------------------------------------------------------------------------------------------------------
# 8. Gradient checkpointing
# ---------------------------------------------------------------------------------------------------------------------
# transformers 5.23 renamed gradient checkpointing to activation checkpointing; the old names are deprecated aliases
# there, and the only names before.
RENAMED_CHECKPOINTING = hasattr(PreTrainedModel, "activation_checkpointing_enable")


@pytest.mark.parametrize("enable", ["activation_checkpointing_enable", "gradient_checkpointing_enable"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_config, enable):
    plain = make_model(tiny_config).train()
    checkpointed = copy.deepcopy(plain)
    if enable == "gradient_checkpointing_enable" and RENAMED_CHECKPOINTING:
        with pytest.warns(FutureWarning, match="activation_checkpointing_enable"):
            checkpointed.gradient_checkpointing_enable()
    elif enable == "activation_checkpointing_enable" and not RENAMED_CHECKPOINTING:
        pytest.skip(f"transformers {transformers.__version__} has no activation_checkpointing_enable yet")
    else:
        getattr(checkpointed, enable)()
    name = "is_activation_checkpointing" if RENAMED_CHECKPOINTING else "is_gradient_checkpointing"
    assert getattr(checkpointed, name) and not getattr(plain, name)
    calls = []
    for layer in [*checkpointed.model.encoder.layers, *checkpointed.model.decoder.layers]:
        assert layer.gradient_checkpointing
        inner = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _inner=inner, **k: calls.append(1) or _inner(*a, **k)

    input_ids, attention_mask = source_batch()
    labels, _ = decoder_batch(seed=3)
    labels[1, 4:] = -100
    losses = []
    for model in (plain, checkpointed):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
    assert len(calls) == 4  # every layer ran under checkpointing
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=0)
    grads = dict(checkpointed.named_parameters())
    for name, param in plain.named_parameters():
        assert param.grad is not None and grads[name].grad is not None, name
        torch.testing.assert_close(grads[name].grad, param.grad, atol=1e-6, rtol=1e-5, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# 9-10. Weight tying, saving and loading, resizing
# ---------------------------------------------------------------------------------------------------------------------
def embedding_matrices(model):
    return (
        model.lm_head.weight,
        model.model.encoder.embeddings.embed_tokens.weight,
        model.model.decoder.embeddings.embed_tokens.weight,
    )


EMBEDDING_KEYS = {
    "lm_head.weight",
    "model.encoder.embeddings.embed_tokens.weight",
    "model.decoder.embeddings.embed_tokens.weight",
}


def saved_keys(directory):
    with safe_open(os.path.join(directory, "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("position_embedding_type", ["sinusoidal", "learned"])
def test_tied_embeddings_are_saved_once_and_restored(tiny_config, tmp_path, position_embedding_type):
    model = make_model(tiny_config, position_embedding_type=position_embedding_type)
    head, enc, dec = embedding_matrices(model)
    assert isinstance(head, nn.Parameter) and head is enc and enc is dec

    model.save_pretrained(tmp_path)
    names = os.listdir(tmp_path)
    assert "model.safetensors" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    keys = saved_keys(tmp_path)
    assert len(keys & EMBEDDING_KEYS) == 1  # the shared matrix is stored once
    assert not [k for k in keys if k.endswith("embed_positions.table")]  # the sinusoid table is never saved
    if position_embedding_type == "learned":
        assert {
            "model.encoder.embeddings.embed_positions.weight",
            "model.decoder.embeddings.embed_positions.weight",
        } <= keys

    loaded = VaswaniForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    head2, enc2, dec2 = embedding_matrices(loaded)
    assert head2 is enc2 and enc2 is dec2
    assert head2.data_ptr() == enc2.data_ptr() == dec2.data_ptr()
    torch.testing.assert_close(head2, head, atol=0, rtol=0)
    for side in ("encoder", "decoder"):
        positions = getattr(loaded.model, side).embeddings.embed_positions
        if position_embedding_type == "sinusoidal":
            torch.testing.assert_close(
                positions.table, VaswaniSinusoidalPositions.create_table(32, 16), atol=0, rtol=0
            )
        else:
            assert isinstance(positions.weight, nn.Parameter)
            torch.testing.assert_close(
                positions.weight, getattr(model.model, side).embeddings.embed_positions.weight, atol=0, rtol=0
            )
    input_ids, attention_mask = source_batch()
    decoder_input_ids, _ = decoder_batch()
    with torch.no_grad():
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
        torch.testing.assert_close(loaded(**kwargs).logits, model(**kwargs).logits, atol=0, rtol=0)


def test_untied_embeddings_are_three_saved_matrices(tiny_config, tmp_path):
    model = make_model(tiny_config, tie_word_embeddings=False)
    head, enc, dec = embedding_matrices(model)
    assert head is not enc and enc is not dec and head is not dec
    assert len({head.data_ptr(), enc.data_ptr(), dec.data_ptr()}) == 3
    assert not torch.equal(enc, dec) and not torch.equal(head, enc)

    model.save_pretrained(tmp_path)
    assert EMBEDDING_KEYS <= saved_keys(tmp_path)
    loaded = VaswaniForConditionalGeneration.from_pretrained(tmp_path)
    restored = embedding_matrices(loaded)
    assert len({p.data_ptr() for p in restored}) == 3
    for original, back in zip((head, enc, dec), restored, strict=True):
        torch.testing.assert_close(back, original, atol=0, rtol=0)


def test_resize_token_embeddings_keeps_the_three_way_tie(tiny_config):
    model = make_model(tiny_config)
    old = model.model.encoder.embeddings.embed_tokens.weight.detach().clone()
    model.resize_token_embeddings(70)
    head, enc, dec = embedding_matrices(model)
    assert head is enc and enc is dec
    assert enc.shape == (70, 16) and model.config.vocab_size == 70
    torch.testing.assert_close(enc[:64], old, atol=0, rtol=0)
    input_ids, attention_mask = source_batch()
    input_ids[0, 2] = 69
    labels, _ = decoder_batch(seed=3)
    labels[0, 3] = 69
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out.logits.shape == (3, 6, 70)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert enc.grad is not None and enc.grad[69].abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------------
# 11. Loss (§5.4) and gradient accumulation
# ---------------------------------------------------------------------------------------------------------------------
def label_batch(seed=4, rows=4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, 64, (rows, 6), generator=g)
    lengths = [6, 3, 5, 2][:rows]
    for row, length in enumerate(lengths):
        labels[row, length - 1] = EOS
        labels[row, length:] = -100
    input_ids = torch.randint(3, 64, (rows, 7), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[3, 2:] = 0
    return input_ids.masked_fill(attention_mask == 0, PAD), attention_mask, labels


def test_loss_is_the_cross_entropy_against_labels_per_target_token(tiny_config):
    """transformers' convention: `model(labels=...).loss` is plain cross-entropy (the paper's label smoothing is the
    training recipe's, `vaswani_hf.training.loss.label_smoothed_loss`)."""
    model = make_model(tiny_config)
    input_ids, attention_mask, labels = label_batch()
    n_targets = int((labels != -100).sum())
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        total = F.cross_entropy(
            out.logits.reshape(-1, 64),
            labels.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        torch.testing.assert_close(out.loss, total / n_targets, atol=1e-6, rtol=1e-6)
        # Decoder inputs are the labels shifted right behind <s>.
        shifted = labels[:, :-1].masked_fill(labels[:, :-1] == -100, PAD)
        decoder_input_ids = torch.cat([torch.full((4, 1), BOS), shifted], 1)
        explicit = model(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids, labels=labels
        )
        torch.testing.assert_close(explicit.logits, out.logits, atol=0, rtol=0)
        # <pad> (id 0) in labels is ignored exactly like -100.
        pad_labels = model(
            input_ids=input_ids, attention_mask=attention_mask, labels=labels.masked_fill(labels == -100, PAD)
        )
        torch.testing.assert_close(pad_labels.loss, out.loss, atol=0, rtol=0)
        # With num_items_in_batch the sum is divided by it instead.
        scaled = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, num_items_in_batch=40)
        torch.testing.assert_close(scaled.loss, total / 40, atol=1e-6, rtol=1e-6)


def test_config_saved_with_label_smoothing_loads_with_the_plain_loss(tiny_config, tmp_path):
    """Models saved when the config carried the loss's label smoothing still load; it no longer changes the loss."""
    model = make_model(tiny_config)
    model.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "label_smoothing": 0.1}))
    loaded = VaswaniForConditionalGeneration.from_pretrained(tmp_path)
    assert not hasattr(loaded.config, "label_smoothing")
    input_ids, attention_mask, labels = label_batch()
    with torch.no_grad():
        out = loaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    plain = F.cross_entropy(out.logits.reshape(-1, 64), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, plain, atol=1e-6, rtol=1e-6)


def test_a_forward_with_labels_builds_no_cache(tiny_config):
    """Training reads no cache, so none is filled: the config's `use_cache=True` must not make one behind the loss."""
    model = make_model(tiny_config).train()
    assert model.config.use_cache
    input_ids, attention_mask, labels = label_batch()
    assert output_cache(model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)) is None
    decoder_input_ids = model.shift_tokens_right(labels)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids)
    # A training forward without labels (a Trainer smoothing the labels itself) builds none either...
    assert output_cache(model(**inputs)) is None
    # ...while decoding does, by default or when asked.
    with torch.no_grad():
        assert output_cache(model.eval()(**inputs)) is not None
        assert output_cache(model.train()(**inputs, use_cache=True)) is not None


def test_gradient_accumulation_with_num_items_in_batch_is_exact(tiny_config):
    model = make_model(tiny_config).train()
    input_ids, attention_mask, labels = label_batch()
    n_targets = int((labels != -100).sum())

    model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
    full = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        model(
            input_ids=input_ids[half],
            attention_mask=attention_mask[half],
            labels=labels[half],
            num_items_in_batch=n_targets,
        ).loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, full[name], atol=1e-6, rtol=1e-5, msg=name)

    # Averaging each half over its own tokens (no num_items_in_batch) is not the same update.
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        loss = model(input_ids=input_ids[half], attention_mask=attention_mask[half], labels=labels[half]).loss
        (loss / 2).backward()
    assert max((p.grad - full[n]).abs().max() for n, p in model.named_parameters()) > 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# 12. Weights that do not fit the config
# ---------------------------------------------------------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_weights_that_do_not_fit_the_config_are_refused(tiny_config, tmp_path):
    model = make_model(tiny_config)

    wrong_vocab = tmp_path / "wrong_vocab"
    model.save_pretrained(wrong_vocab)
    config = json.loads((wrong_vocab / "config.json").read_text())
    config["vocab_size"] = 80
    (wrong_vocab / "config.json").write_text(json.dumps(config))
    # transformers itself refuses a shape mismatch (RuntimeError); the shapes are in the load report it logs.
    records = _Records()
    logging.getLogger("transformers").addHandler(records)
    try:
        with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
            VaswaniForConditionalGeneration.from_pretrained(wrong_vocab)
    finally:
        logging.getLogger("transformers").removeHandler(records)
    report = "\n".join(records.messages)
    assert "embed_tokens.weight" in report and "[64, 16]" in report and "[80, 16]" in report
    # The documented way out: reinitialise the mismatched matrix (a new vocabulary), keeping the tie.
    resized = VaswaniForConditionalGeneration.from_pretrained(wrong_vocab, ignore_mismatched_sizes=True)
    head, enc, dec = embedding_matrices(resized)
    assert head is enc and enc is dec and enc.shape == (80, 16)
    torch.testing.assert_close(
        resized.model.encoder.layers[0].ffn.fc1.weight, model.model.encoder.layers[0].ffn.fc1.weight, atol=0, rtol=0
    )
    input_ids, attention_mask = source_batch()
    input_ids[0, 1] = 79
    assert resized(
        input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_batch()[0]
    ).logits.shape == (3, 6, 80)

    missing = tmp_path / "missing"
    model.save_pretrained(missing)
    tensors = load_file(missing / "model.safetensors")
    del tensors["model.decoder.layers.1.encoder_attn.kv_proj.weight"]
    save_file(tensors, missing / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing: model\.decoder\.layers\.1\.encoder_attn\.kv_proj\.weight"):
        VaswaniForConditionalGeneration.from_pretrained(missing)


# ---------------------------------------------------------------------------------------------------------------------
# 13. Options that depart from the paper: pre-norm, learned positions
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        dict(norm_first=True),
        dict(position_embedding_type="learned"),
        dict(norm_first=True, position_embedding_type="learned"),
    ],
    ids=["pre-norm", "learned", "both"],
)
def test_options_run_forward_and_backward(tiny_config, overrides):
    model = make_model(tiny_config, **overrides).train()
    input_ids, attention_mask, labels = label_batch()
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    assert torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    learned = overrides.get("position_embedding_type") == "learned"
    for stack in (model.model.encoder, model.model.decoder):
        assert isinstance(stack.embeddings.embed_positions, nn.Embedding) == learned
        assert isinstance(stack.final_norm, nn.LayerNorm) == bool(overrides.get("norm_first"))


def test_post_norm_has_no_final_norm_and_pre_norm_normalises_inputs(tiny_config):
    post = make_model(tiny_config)
    assert post.model.encoder.final_norm is None and post.model.decoder.final_norm is None
    pre = make_model(tiny_config, norm_first=True)
    layer = pre.model.encoder.layers[0]
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        h = x + layer.self_attn(layer.self_attn_sublayer.norm(x))[0]
        expected = h + layer.ffn(layer.ffn_sublayer.norm(h))
        torch.testing.assert_close(layer(x, None), expected, atol=1e-6, rtol=0)
        post_layer = post.model.encoder.layers[0]
        h = post_layer.self_attn_sublayer.norm(x + post_layer.self_attn(x)[0])
        expected = post_layer.ffn_sublayer.norm(h + post_layer.ffn(h))
        torch.testing.assert_close(post_layer(x, None), expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# 14. Input checks
# ---------------------------------------------------------------------------------------------------------------------
def test_too_long_inputs_are_refused(tiny_config):
    model = make_model(tiny_config, max_position_embeddings=8)
    short = torch.randint(3, 64, (1, 8))
    long = torch.randint(3, 64, (1, 9))
    with torch.no_grad():
        assert model(input_ids=short, decoder_input_ids=short).logits.shape == (1, 8, 64)
        with pytest.raises(ValueError, match="max_position_embeddings=8"):
            model(input_ids=long, decoder_input_ids=short)
        with pytest.raises(ValueError, match="max_position_embeddings=8"):
            model(input_ids=short, decoder_input_ids=long)


# ---------------------------------------------------------------------------------------------------------------------
# Trainer: gradient accumulation is exact because the model divides by the Trainer's num_items_in_batch
# ---------------------------------------------------------------------------------------------------------------------
def trainer_update(model, tmp_path, batch_size, accumulation):
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    # Target lengths differ, so per-micro-batch averaging would weight tokens unequally.
    examples = [{"input_ids": [5 + i, 6 + i, 2], "labels": [7 + i] * (1 + i % 4) + [2]} for i in range(8)]

    def collate(features):
        width = max(len(f["input_ids"]) for f in features)
        label_width = max(len(f["labels"]) for f in features)
        return {
            "input_ids": torch.tensor([f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features]),
            "attention_mask": torch.tensor(
                [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
            ),
            "labels": torch.tensor([f["labels"] + [-100] * (label_width - len(f["labels"])) for f in features]),
        }

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path / f"run{batch_size}x{accumulation}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=1.0,
        # Plain SGD without clipping: Adam's first step and norm clipping are nearly scale-free and would hide a
        # wrongly scaled gradient.
        optim="sgd",
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        remove_unused_columns=False,
        seed=0,
    )
    Seq2SeqTrainer(model=model, args=args, train_dataset=examples, data_collator=collate).train()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_trainer_accumulation_equals_one_large_batch(tiny_config, tmp_path):
    def fresh():
        torch.manual_seed(0)
        return VaswaniForConditionalGeneration(tiny_config())

    one_batch = trainer_update(fresh(), tmp_path, batch_size=8, accumulation=1)
    accumulated = trainer_update(fresh(), tmp_path, batch_size=4, accumulation=2)
    initial = dict(fresh().named_parameters())
    assert any(not torch.equal(one_batch[n], initial[n]) for n in one_batch)  # the update did something
    for name in one_batch:
        torch.testing.assert_close(accumulated[name], one_batch[name], atol=1e-6, rtol=1e-5, msg=name)
