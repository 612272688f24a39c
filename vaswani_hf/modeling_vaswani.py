"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as a transformers model.

Read top to bottom in the paper's order: scaled dot-product attention (§3.2.1), multi-head attention (§3.2.2),
the position-wise feed-forward network (§3.3), the residual dropout that embeddings and sub-layers apply (§5.4),
embeddings (§3.4), positional encodings (§3.5), the encoder and decoder layers and stacks (§3.1), the transformers
plumbing, then the model with its output projection and the paper's decoding (§6.1, whose pieces are in
generation_vaswani.py). The paper's label smoothing (§5.4) is part of the
training recipe, not of the model's loss.

Shape legend: B batch, S source length, T target length (the new decoder positions of this call), L key length
(S for cross-attention, past + T for cached decoder self-attention), H heads, D head dim (d_k = d_v = d_model / H),
d d_model, V vocabulary size.
"""

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationConfig, GenerationMixin
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_vaswani import VaswaniConfig
from .generation_vaswani import (
    DecodingCache,
    add_source_length_limit,
    group_mask,
    one_row_per_group,
    paper_generation_config,
)
from .transformers_adapter import (
    CACHE_ARG,
    LEGACY_CACHE_ARG,
    GNMTBeamSearchMixin,
    cache_field,
    output_cache,
    pop_cache,
)

# The files a saved directory needs to load without this package (see configuration_vaswani.AUTO_MAP).
REMOTE_CODE_FILES = (
    "configuration_vaswani.py",
    "generation_vaswani.py",
    "modeling_vaswani.py",
    "pipeline_translation.py",
    "transformers_adapter.py",
)


# ---------------------------------------------------------------------------------------------------------------------
# §3.2.1 Scaled dot-product attention
# ---------------------------------------------------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: softmax(Q K^T / sqrt(d_k)) V.

    `attention_mask` is additive (0 where allowed, a large negative number where masked), as transformers'
    mask builders make it; the sdpa and flash kernels registered in `ALL_ATTENTION_FUNCTIONS` compute the same.
    Returns the output as (B, T, H, D), the layout every attention interface returns, and the weights (B, H, T, L).
    """
    # Scores in float32 before the mask is added: in fp16, a score below about -16 plus the mask's -65504 rounds to
    # -inf, and a row whose keys are all masked (a left-padded position) would turn into NaN and spread.
    scores = torch.matmul(query, key.transpose(2, 3)).float() * scaling  # (B, H, T, D) @ (B, H, D, L) -> (B, H, T, L)
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value)  # (B, H, T, L) @ (B, H, L, D) -> (B, H, T, D)
    return output.transpose(1, 2).contiguous(), weights  # (B, T, H, D)


# ---------------------------------------------------------------------------------------------------------------------
# §3.2.2 Multi-head attention
# ---------------------------------------------------------------------------------------------------------------------
class VaswaniAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O with head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The h projections of each of Q, K and V are one d x d matrix (h blocks of d x d_k side by side). Self-attention
    stacks W^Q, W^K and W^V into one (3d, d) weight, laid out as `torch.nn.MultiheadAttention.in_proj_weight`, so one
    matmul projects all three; cross-attention projects queries from the decoder and stacks W^K and W^V over the
    encoder output, which is computed once per sequence and cached for every decoding step.
    """

    def __init__(
        self, config: VaswaniConfig, layer_idx: int, is_causal: bool = False, is_cross_attention: bool = False
    ):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        # Read by the sdpa/flash interfaces: without it they assume causal attention.
        self.is_causal = is_causal
        self.is_cross_attention = is_cross_attention
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads
        self.scaling = self.head_dim**-0.5  # 1 / sqrt(d_k)
        self.dropout = config.attention_dropout
        if is_cross_attention:
            self.q_proj = nn.Linear(config.d_model, config.d_model)
            self.kv_proj = nn.Linear(config.d_model, 2 * config.d_model)
        else:
            self.qkv_proj = nn.Linear(config.d_model, 3 * config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)  # W^O

    def _split_heads(self, x: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
        """Splits a fused projection [X W^Q; X W^K; ...] of `parts` blocks into per-head tensors (B, H, n, D)."""
        # Split before reshaping: the gradient then flows back through one concatenation into the (B, n, parts * d)
        # layout the projection's backward reads, where unbinding a permuted view would stack and copy it twice.
        blocks = x.chunk(parts, dim=-1)  # (B, n, parts * d) -> parts x (B, n, d)
        # (B, n, d) -> (B, n, H, D) -> (B, H, n, D)
        return tuple(block.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2) for block in blocks)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`hidden_states` (B, T, d) gives the queries; keys and values come from `key_value_states` (B, S, d) in
        cross-attention, else from `hidden_states` itself. Returns the output (B, T, d) and, from the eager kernel,
        the attention weights (B, H, T, L)."""
        if self.is_cross_attention:
            (query,) = self._split_heads(self.q_proj(hidden_states), 1)  # (B, H, T, D)
            cross_cache = cache.cross_attention_cache if cache is not None else None
            if cache is not None and cache.is_updated.get(self.layer_idx):
                layer = cross_cache.layers[self.layer_idx]
                key, value = layer.keys, layer.values  # (B/g, H, S, D)
            else:
                if cache is not None:
                    key_value_states = one_row_per_group(key_value_states, getattr(cache, "row_group", 1))
                key, value = self._split_heads(self.kv_proj(key_value_states), 2)  # (B/g, H, S, D) x 2
                if cache is not None:
                    key, value = cross_cache.update(key, value, self.layer_idx)
                    cache.is_updated[self.layer_idx] = True
            # In beam search the g beams of a sentence share its keys (g = 1 otherwise): their queries take turns.
            group = query.shape[0] // key.shape[0]
            if group > 1:
                # (B, H, T, D) -> (B/g, g, H, T, D) -> (B/g, H, g, T, D) -> (B/g, H, gT, D)
                query = query.unflatten(0, (-1, group)).transpose(1, 2).flatten(2, 3)
                attention_mask = group_mask(attention_mask, group)
        else:
            query, key, value = self._split_heads(self.qkv_proj(hidden_states), 3)  # (B, H, T, D) x 3
            if cache is not None:
                key, value = cache.self_attention_cache.update(key, value, self.layer_idx)  # (B, H, L, D)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        if self.is_cross_attention and group > 1:
            # (B/g, gT, H, D) -> (B/g, g, T, H, D) -> (B, T, H, D)
            output = output.unflatten(1, (group, -1)).flatten(0, 1)
            if weights is not None:  # (B/g, H, gT, S) -> (B/g, g, H, T, S) -> (B, H, T, S)
                weights = weights.unflatten(2, (group, -1)).transpose(1, 2).flatten(0, 1)
        output = output.reshape(*hidden_states.shape[:-1], -1)  # (B, T, H, D) -> (B, T, d): Concat(head_1..head_h)
        return self.out_proj(output), weights


# ---------------------------------------------------------------------------------------------------------------------
# §3.3 Position-wise feed-forward network
# ---------------------------------------------------------------------------------------------------------------------
class VaswaniFeedForward(nn.Module):
    """Eq. 2: FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied to each position separately and identically."""

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff)  # (B, n, d) -> (B, n, d_ff)
        self.fc2 = nn.Linear(config.d_ff, config.d_model)  # (B, n, d_ff) -> (B, n, d)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(hidden_states)))


# ---------------------------------------------------------------------------------------------------------------------
# §5.4 Residual dropout, applied by the embeddings and by every sub-layer
# ---------------------------------------------------------------------------------------------------------------------
class _DropoutFromRandomBits(torch.autograd.Function):
    """Dropout whose keep-mask is drawn as 31 random bits per element compared with round(p * 2^31).

    What `nn.Dropout` computes (each element zeroed with probability p, to within 2^-31, the rest scaled by 1/(1-p)),
    from another draw of the same generator: on a CPU, `random_()` on int32 takes 16 ms of a training step where the
    `bernoulli_` that `nn.Dropout` calls took 42-45 ms, 7-11% of the step (docs/speed.md, "The training step").
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        # (*) int32 bits in [0, 2^31) -> keep (0 or 1) -> keep / (1 - p) in x's dtype, saved for the backward
        scale = torch.empty(x.shape, dtype=torch.int32).random_().ge_(round(p * 2**31)).to(x.dtype).mul_(1 / (1 - p))
        ctx.save_for_backward(scale)
        return x * scale

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (scale,) = ctx.saved_tensors
        return grad_output * scale, None


class VaswaniDropout(nn.Dropout):
    """§5.4: "We apply dropout to the output of each sub-layer, before it is added to the sub-layer input and
    normalized. In addition, we apply dropout to the sums of the embeddings and the positional encodings."

    `nn.Dropout` with a faster mask on a CPU (`_DropoutFromRandomBits`); elsewhere, and inside `torch.compile`, which
    fuses its own, PyTorch's kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p == 1 or torch.compiler.is_compiling():
            return super().forward(x)
        return _DropoutFromRandomBits.apply(x, self.p)


# ---------------------------------------------------------------------------------------------------------------------
# §3.4 Embeddings and §3.5 positional encoding
# ---------------------------------------------------------------------------------------------------------------------
class VaswaniSinusoidalPositions(nn.Module):
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)).

    Sines and cosines interleave, as in the formula (tensor2tensor and Marian concatenate them instead). The table is
    a non-persistent buffer: never saved, rebuilt by `_init_weights` when a model is loaded.
    """

    def __init__(self, num_positions: int, d_model: int):
        super().__init__()
        self.register_buffer("table", self.create_table(num_positions, d_model), persistent=False)

    @staticmethod
    def create_table(num_positions: int, d_model: int) -> torch.Tensor:
        position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
        inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,): 1/10000^(2i/d)
        angles = position * inv_freq  # (P, 1) * (d/2,) -> (P, d/2)
        table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (P, d/2, 2)
        return table.flatten(1).float()  # (P, d): sin, cos, sin, cos, ...

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return self.table[position_ids]  # (n,) -> (n, d)


class VaswaniEmbeddings(nn.Module):
    """§3.4 and §3.5: token embedding * sqrt(d_model) + positional encoding, then dropout (§5.4).

    The token embedding matrix is tied (by `_tied_weights_keys`) between encoder, decoder and the pre-softmax
    projection unless `tie_word_embeddings=False`. The sqrt(d_model) factor matters because of that tie: the matrix is
    initialised with std d_model^-0.5 to suit the output projection, and the factor brings the embeddings back to
    unit scale next to the positional encodings, whose entries lie in [-1, 1].
    """

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model)
        self.scale = math.sqrt(config.d_model)
        if config.position_embedding_type == "learned":  # Table 3 row (E)
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.d_model)
        else:
            self.embed_positions = VaswaniSinusoidalPositions(config.max_position_embeddings, config.d_model)
        self.max_positions = config.max_position_embeddings
        self.dropout = VaswaniDropout(config.dropout)

    def forward(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, offset: int = 0
    ) -> torch.Tensor:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, n) -> (B, n, d)
        length = inputs_embeds.shape[1]
        if offset + length > self.max_positions:
            raise ValueError(
                f"Sequence of {offset + length} positions is longer than max_position_embeddings="
                f"{self.max_positions}: truncate the input (tokenizer(..., truncation=True)) or lower max_new_tokens."
            )
        positions = self.embed_positions(torch.arange(offset, offset + length, device=inputs_embeds.device))  # (n, d)
        # The sinusoid table is computed in float32 and stays so in a model that from_pretrained(dtype=...) builds in
        # bf16/fp16: the sum takes the embeddings' dtype, so such a model computes in its own dtype throughout.
        return self.dropout(inputs_embeds * self.scale + positions.to(inputs_embeds.dtype))  # (B, n, d) + (n, d)


# ---------------------------------------------------------------------------------------------------------------------
# §3.1 Encoder and decoder layers
# ---------------------------------------------------------------------------------------------------------------------
class VaswaniSublayer(nn.Module):
    """§3.1 and §5.4: LayerNorm(x + Dropout(Sublayer(x))), the paper's post-norm residual connection.

    With `norm_first=True` it is x + Dropout(Sublayer(LayerNorm(x))) (pre-norm), a documented deviation.
    """

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = VaswaniDropout(config.dropout)
        self.norm_first = config.norm_first

    def forward(self, x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.norm_first:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class VaswaniEncoderLayer(GradientCheckpointingLayer):
    """§3.1: multi-head self-attention, then the feed-forward network, each in a residual sub-layer."""

    def __init__(self, config: VaswaniConfig, layer_idx: int):
        super().__init__()
        self.self_attn = VaswaniAttention(config, layer_idx)
        self.self_attn_sublayer = VaswaniSublayer(config)
        self.ffn = VaswaniFeedForward(config)
        self.ffn_sublayer = VaswaniSublayer(config)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        hidden_states = self.self_attn_sublayer(
            hidden_states, lambda x: self.self_attn(x, attention_mask=attention_mask, **kwargs)[0]
        )
        return self.ffn_sublayer(hidden_states, self.ffn)


class VaswaniDecoderLayer(GradientCheckpointingLayer):
    """§3.1: masked self-attention, encoder-decoder attention over the encoder output, then the feed-forward network."""

    def __init__(self, config: VaswaniConfig, layer_idx: int):
        super().__init__()
        self.self_attn = VaswaniAttention(config, layer_idx, is_causal=True)
        self.self_attn_sublayer = VaswaniSublayer(config)
        self.encoder_attn = VaswaniAttention(config, layer_idx, is_cross_attention=True)
        self.encoder_attn_sublayer = VaswaniSublayer(config)
        self.ffn = VaswaniFeedForward(config)
        self.ffn_sublayer = VaswaniSublayer(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        hidden_states = self.self_attn_sublayer(
            hidden_states, lambda x: self.self_attn(x, attention_mask=attention_mask, cache=cache, **kwargs)[0]
        )
        hidden_states = self.encoder_attn_sublayer(
            hidden_states,
            lambda x: self.encoder_attn(
                x,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                **kwargs,
            )[0],
        )
        return self.ffn_sublayer(hidden_states, self.ffn)


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained-model plumbing: initialisation, attention backends, tying, checkpointing (declared, not coded)
# ---------------------------------------------------------------------------------------------------------------------
class VaswaniPreTrainedModel(PreTrainedModel):
    config: VaswaniConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VaswaniEncoderLayer", "VaswaniDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    remote_code_files = REMOTE_CODE_FILES

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (safetensors, the shared matrix stored once), plus the code files that
        let the directory load with `trust_remote_code=True` where this package is not installed."""
        super().save_pretrained(save_directory, *args, **kwargs)
        for name in REMOTE_CODE_FILES:
            shutil.copyfile(Path(__file__).with_name(name), Path(save_directory) / name)

    @classmethod
    def from_pretrained(cls, *args, output_loading_info: bool = False, **kwargs):
        """`PreTrainedModel.from_pretrained` that refuses a checkpoint with missing or unexpected tensors instead of
        initialising them at random (or dropping them) behind a warning. (A shape mismatch already raises in transformers unless
        `ignore_mismatched_sizes=True`.)

        A caller who asks for `output_loading_info=True` gets the report instead, as from transformers, and decides;
        so does one who passes the weights as `state_dict` (transformers initialises what it lacks). A tied weight
        (the decoder embeddings and the output projection, §3.4) is stored once, under its source: it is never
        missing while the source is there."""
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if output_loading_info:
            return model, info
        if kwargs.get("state_dict") is not None:
            return model
        # transformers does not report a tied weight as missing when its source loaded. An unexpected tensor is as
        # loud as a missing one: weights of another architecture (learned positions, pre-norm's final norms) under
        # an edited config would otherwise load with a warning table and compute something else.
        problems = [
            f"{kind}: {', '.join(sorted(info[key]))}"
            for kind, key in (("missing", "missing_keys"), ("unexpected", "unexpected_keys"))
            if info[key]
        ]
        if problems:
            raise ValueError(
                f"The weights in {args[0] if args else kwargs.get('pretrained_model_name_or_path')!r} do not match "
                f"its config, {'; '.join(problems)}. Check that config.json and the weights come from the same "
                "model, or pass output_loading_info=True to load anyway and inspect the report."
            )
        return model

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """The paper does not say how it initialises. We follow fairseq's Transformer, which reproduced the paper:
        Xavier-uniform linear maps with zero biases, and embeddings N(0, d_model^-0.5), so that logits through the
        tied output projection start near unit scale."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, VaswaniSinusoidalPositions):
            init.copy_(module.table, module.create_table(*module.table.shape))


class VaswaniEncoder(VaswaniPreTrainedModel):
    """§3.1: a stack of N encoder layers over the embedded source."""

    _can_record_outputs = {"hidden_states": VaswaniEncoderLayer, "attentions": VaswaniAttention}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.embeddings = VaswaniEmbeddings(config)
        self.layers = nn.ModuleList([VaswaniEncoderLayer(config, i) for i in range(config.encoder_layers)])
        # Pre-norm leaves the residual stream un-normalised: a final LayerNorm closes the stack.
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else None
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        hidden_states = self.embeddings(input_ids, inputs_embeds)  # (B, S, d)
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask, **kwargs)
        if self.final_norm is not None:
            hidden_states = self.final_norm(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states)


class VaswaniDecoder(VaswaniPreTrainedModel):
    """§3.1: a stack of N decoder layers; position i attends to target positions up to i and to the whole source."""

    _can_record_outputs = {
        "hidden_states": VaswaniDecoderLayer,
        "attentions": OutputRecorder(VaswaniAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(VaswaniAttention, index=1, layer_name="encoder_attn"),
    }

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.embeddings = VaswaniEmbeddings(config)
        self.layers = nn.ModuleList([VaswaniDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else None
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        cache = pop_cache(cache, kwargs)
        if use_cache and cache is None:
            # transformers' own cache for a forward outside generate(), which brings its DecodingCache.
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        past_length = cache.get_seq_length() if cache is not None else 0
        hidden_states = self.embeddings(input_ids, inputs_embeds, offset=past_length)  # (B, T, d)
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=attention_mask,
            **cache_field(cache.self_attention_cache if cache is not None else None),
        )
        encoder_attention_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        for layer in self.layers:
            # encoder_hidden_states goes positionally: gradient checkpointing only re-feeds positional tensors.
            hidden_states = layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                **kwargs,
            )
        if self.final_norm is not None:
            hidden_states = self.final_norm(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, **cache_field(cache))


class VaswaniModel(VaswaniPreTrainedModel):
    """The encoder-decoder without the output projection: returns the decoder's last hidden states."""

    # §3.4: the source and target embeddings are one matrix (unless config.tie_word_embeddings is False).
    _tied_weights_keys = {"decoder.embeddings.embed_tokens.weight": "encoder.embeddings.embed_tokens.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.encoder = VaswaniEncoder(config)
        self.decoder = VaswaniDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding):
        self.encoder.set_input_embeddings(value)
        if self.config.tie_word_embeddings:
            self.decoder.set_input_embeddings(value)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        cache = pop_cache(cache, kwargs)
        if use_cache is None and self.training:
            # A cache serves decoding only; left as None, the decoder would take the config's default (True) and fill
            # one at every training step (a Trainer with label smoothing calls the model without labels).
            use_cache = False
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **cache_field(output_cache(decoder_outputs)),
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


# ---------------------------------------------------------------------------------------------------------------------
# The model with the output projection (§3.4)
# ---------------------------------------------------------------------------------------------------------------------
def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    pad_token_id: int,
    num_items_in_batch: int | torch.Tensor | None,
) -> torch.Tensor:
    """The loss of `forward`: the cross-entropy of `logits` (B, T, V) against `labels` (B, T), summed over the target
    tokens and divided by `num_items_in_batch`, or by the number of this batch's target tokens without it."""
    # <pad> is never a target: tokenizers pad labels with it, collators with -100; both are ignored.
    labels = labels.masked_fill(labels == pad_token_id, -100)
    loss = F.cross_entropy(
        logits.flatten(0, 1).float(),  # (B * T, V)
        labels.flatten().to(logits.device),
        ignore_index=-100,
        reduction="sum",
    )
    denominator = num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum()
    return loss / denominator


class VaswaniForConditionalGeneration(GNMTBeamSearchMixin, VaswaniPreTrainedModel, GenerationMixin):
    """The full Transformer: encoder, decoder and the pre-softmax projection that shares the embedding matrix."""

    # §3.4: the pre-softmax linear transformation is the embedding matrix too.
    _tied_weights_keys = {"lm_head.weight": "model.encoder.embeddings.embed_tokens.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.model = VaswaniModel(config)
        # No bias: the projection is the transposed embedding matrix alone.
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()
        self.generation_config = paper_generation_config(config)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    def shift_tokens_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs from labels: <s> then the labels without their last token, -100 read as <pad>."""
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    prepare_decoder_input_ids_from_labels = shift_tokens_right

    def _decoder_input_ids(
        self,
        labels: torch.LongTensor | None,
        decoder_input_ids: torch.LongTensor | None,
        decoder_inputs_embeds: torch.Tensor | None,
    ) -> torch.LongTensor | None:
        """The decoder input ids of a `forward` call: those given, else the labels shifted right; None where the call
        gives `decoder_inputs_embeds` instead."""
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.shift_tokens_right(labels)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "The decoder has no input: pass labels (the decoder inputs are built from them), decoder_input_ids or "
                "decoder_inputs_embeds. A Trainer with label_smoothing_factor removes the labels before calling the "
                "model: collate with DataCollatorForSeq2Seq(tokenizer, model=model), which adds decoder_input_ids."
            )
        return decoder_input_ids

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""
        cache: the decoding cache (`DecodingCache`, or any `EncoderDecoderCache`); also accepted under its name before
            transformers 5.24, `past_key_values`.
        labels (`(B, T)`): target ids ending with </s>, -100 where no loss is wanted. Decoder inputs are the labels
            shifted right behind <s> unless given.
        num_items_in_batch: the number of target tokens (labels != -100) in the whole update, across gradient
            accumulation steps and processes. The loss is the sum over this batch divided by it, so accumulated and
            data-parallel gradients equal those of one large batch (§5.1 batches by tokens). `Trainer` passes it.
            Without it the loss is averaged over this batch's target tokens.

        The loss is the cross-entropy against `labels`, transformers' convention. The paper's label smoothing (§5.4)
        belongs to the training recipe: `vaswani_hf.training.loss.label_smoothed_loss` in `vaswani-train`, and
        `label_smoothing_factor` of `Seq2SeqTrainer` in fine-tuning.
        """
        cache = pop_cache(cache, kwargs)
        decoder_input_ids = self._decoder_input_ids(labels, decoder_input_ids, decoder_inputs_embeds)
        outputs: Seq2SeqModelOutput = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            # Training reads no cache; an explicit False, because None would take the config's default (True).
            use_cache=False if labels is not None else use_cache,
            **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, d) @ (d, V) -> (B, T, V)
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels, self.config.pad_token_id, num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_field(output_cache(outputs)),
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )

    @torch.no_grad()
    def generate(
        self, inputs=None, generation_config: GenerationConfig | None = None, logits_processor=None, **kwargs
    ):
        """`GenerationMixin.generate` with the paper's decoding (§6.1) as the saved defaults: beam 4, GNMT length
        penalty 0.6 (`length_penalty_type="gnmt"`), and at most input length + `max_length_offset` (50) output
        tokens per sentence.

        The source-relative limit applies unless this call passes `max_length` or `max_new_tokens` (or a
        `generation_config` with `max_new_tokens`); `max_length_offset=None` switches it off. `length_penalty_type=
        "power"` restores transformers' |Y| ** length_penalty.

        Unless the call passes a cache or asks for another kind (`cache_implementation`, assisted decoding), decoding
        uses a `DecodingCache` sized for this call, handed to transformers through generate's own cache argument.
        """
        defaults = generation_config if generation_config is not None else self.generation_config
        logits_processor = add_source_length_limit(self, inputs, generation_config, kwargs, logits_processor)
        cache = self._decoding_cache(defaults, kwargs)
        if cache is not None:
            kwargs[CACHE_ARG] = cache
        return super().generate(
            inputs, generation_config=generation_config, logits_processor=logits_processor, **kwargs
        )

    def _decoding_cache(self, defaults: GenerationConfig, kwargs: dict) -> DecodingCache | None:
        """The cache for a `generate()` call: growing self-attention layers with room for the call's longest output,
        and one copy of the encoder keys and values per sentence. None where the call passes a cache, turns caching
        off, names another cache implementation, or decodes with an assistant (which crops a `DynamicCache`)."""

        def setting(name):
            return kwargs[name] if kwargs.get(name) is not None else getattr(defaults, name, None)

        if (
            kwargs.get(CACHE_ARG) is not None
            or kwargs.get(LEGACY_CACHE_ARG) is not None
            or setting("use_cache") is False
            or setting("cache_implementation") not in (None, "dynamic")
            or kwargs.get("assistant_model") is not None
            or setting("prompt_lookup_num_tokens") is not None
        ):
            return None
        # The decoder reads <s> and all but the last output token; a longer decoder prompt grows the buffers.
        max_new_tokens, max_length = setting("max_new_tokens"), setting("max_length")
        capacity = max_new_tokens if max_new_tokens is not None else max_length - 1 if max_length else None
        row_group = max(setting("num_beams") or 1, setting("num_return_sequences") or 1)
        return DecodingCache(self.config, capacity=capacity, row_group=row_group)


__all__ = ["VaswaniForConditionalGeneration", "VaswaniModel", "VaswaniPreTrainedModel"]
