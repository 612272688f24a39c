"""The recurrent encoder-decoder that the Transformer replaced (Vaswani et al., 2017, §1 and §4), as a transformers
model.

One model, four forms, chosen by `config.attention`:

- "none": Sutskever et al. (2014), Cho et al. (2014). The encoder reads the source into its final state, the decoder
  starts from that state and it is the only context the decoder gets.
- "additive": Bahdanau et al. (2015). At each step the decoder RNN reads the previous target token together with the
  previous context vector (input feeding) and its own state; attention over the encoder states, scored
  v^T tanh(W s_t + U h_j), gives the new context c_t; [s_t; c_t] goes through a tanh layer that predicts the token.
  Bahdanau et al. score with the previous state s_{t-1} and feed c_t into the same step; here the context computed
  from s_{t-1} enters the RNN at step t as well, and the prediction reads the context of s_t (the arrangement of
  Luong et al., §3.3), so that all forms share one output layer.
- "dot" and "general": Luong et al. (2015), global attention with the scores s_t^T h_j and s_t^T W h_j, computed
  after the RNN step; the context is not fed back into the RNN (Luong et al.'s input feeding is left out), so the
  decoder RNN never waits for attention.

Which decoder forms need a per-step loop in training: only "additive". With teacher forcing the target is known, so
without input feeding ("none", "dot", "general") the decoder RNN runs as ONE fused nn.GRU/nn.LSTM call over the whole
target and attention is computed for all steps at once (a batched matmul). Input feeding makes the input of step t
depend on the context of step t - 1, which depends on the RNN output of step t - 1: the steps are sequential through
attention, so the decoder calls the RNN once per target position, in training as in decoding. The encoder always runs
as one fused call over packed sequences (sources are right-padded; `attention_mask` gives their lengths), so padding
never enters a state.

The decoder starts from the encoder's final state, top layer to top layer (a tanh projection of the two directions'
final states when the encoder is bidirectional). Decoding with `generate()` carries an `RNNDecodingCache`: the
recurrent state of each hypothesis, the fed-back context, and the source-side half of the attention scores.

Shape legend: B batch, S source length, T target length (the new decoder positions of this call), E embedding_size,
H hidden_size, dirs directions the encoder reads in (2 when bidirectional, else 1), M width of an encoder state
(dirs * H), L layers of a stack (Le encoder, Ld decoder), V vocabulary size.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.generation import GenerationConfig, GenerationMixin
from transformers.modeling_outputs import Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.modeling_utils import PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple

from .configuration_rnn import RNNConfig
from .generation_vaswani import add_source_length_limit, paper_generation_config
from .transformers_adapter import (
    CACHE_ARG,
    LEGACY_CACHE_ARG,
    GNMTBeamSearchMixin,
    StatefulGenerationMixin,
    cache_field,
    output_cache,
    pop_cache,
)

# The files a saved directory needs to load without this package (see configuration_rnn.AUTO_MAP).
REMOTE_CODE_FILES = (
    "configuration_rnn.py",
    "configuration_vaswani.py",
    "generation_vaswani.py",
    "modeling_rnn.py",
    "pipeline_translation.py",
    "transformers_adapter.py",
)

RNN_CLASSES = {"gru": nn.GRU, "lstm": nn.LSTM}
# A recurrent state is a tuple of (L, B, H) tensors: (h,) for a GRU, (h, c) for an LSTM.
State = tuple[torch.Tensor, ...]


def recurrent_stack(config: RNNConfig, input_size: int, num_layers: int, bidirectional: bool = False) -> nn.RNNBase:
    # nn.GRU/nn.LSTM apply `dropout` between stacked layers only, and warn when there is no such place.
    return RNN_CLASSES[config.cell](
        input_size,
        config.hidden_size,
        num_layers=num_layers,
        dropout=config.dropout if num_layers > 1 else 0.0,
        bidirectional=bidirectional,
        batch_first=True,
    )


def run_stack(rnn: nn.RNNBase, inputs, state: State | None) -> tuple:
    """`rnn` on `inputs` from `state` (zeros if None); returns its outputs and its final state as a tuple."""
    is_lstm = isinstance(rnn, nn.LSTM)
    outputs, final = rnn(inputs, state if is_lstm or state is None else state[0])
    return outputs, (final if is_lstm else (final,))


# ---------------------------------------------------------------------------------------------------------------------
# The encoder's output and the decoding cache
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class RNNEncoderOutput(ModelOutput):
    """What the encoder hands the decoder: a state per source token (for attention) and the final states (to start
    from). Batch-first throughout, so that `generate()` repeats every field per beam as it does other encoder outputs.

    last_hidden_state (`(B, S, M)`): the top layer's output at each source token, both directions concatenated; zero
        at padding.
    final_hidden_state (`(B, Le, M)`): each layer's final state, both directions concatenated: the forward direction
        after the last real token, the backward one after the first.
    final_cell_state (`(B, Le, M)`): the same for an LSTM's cell; None for a GRU.
    """

    last_hidden_state: torch.FloatTensor | None = None
    final_hidden_state: torch.FloatTensor | None = None
    final_cell_state: torch.FloatTensor | None = None


class RNNDecodingCache(Cache):
    """The decoding state `generate()` carries from step to step: all the decoder needs to continue each hypothesis
    without reading its prefix again.

    - `state`: the decoder RNN's recurrent state, a tuple of (Ld, B, H) tensors ((h,) or (h, c));
    - `context` (B, M): the last context vector, fed into the next step's input ("additive" only);
    - `keys` (B, S, H): the source-side half of the attention scores (U h_j, W h_j, or h_j itself), computed once per
      sentence instead of at every step.

    A recurrent state has no sequence axis, so the cache holds no per-layer key/value layers. A state cannot be taken
    back to an earlier step either: assisted decoding, which needs that, is refused (`is_croppable` below; see
    `transformers_adapter.StatefulGenerationMixin` for releases before 5.25).
    """

    # generate() compiles the forward for a compileable cache (on accelerators): a decoder that loops over positions
    # in Python gains nothing from it.
    is_compileable = False
    # Read by generate()'s deferred stop check, which crops one step back where it can, and from transformers 5.25 by
    # assisted decoding, which it refuses.
    is_croppable = False

    def __init__(self):
        super().__init__(layers=[])
        self.state: State | None = None
        self.context: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.seen_tokens = 0

    def get_seq_length(self, layer_idx: int = 0) -> int:
        """The number of target positions the state has read."""
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row i continues hypothesis `beam_idx[i]`. The state and the fed-back context follow it. The
        keys do not need to: all beams of a sentence hold copies of its keys, and a beam only ever continues a beam of
        its own sentence, so reordering them would copy them onto themselves at every step."""
        beam_idx = beam_idx.to(self.state[0].device)
        self.state = tuple(s.index_select(1, beam_idx) for s in self.state)  # (Ld, B, H)
        if self.context is not None:
            self.context = self.context.index_select(0, beam_idx)  # (B, M)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError(
            "A recurrent state cannot be taken back to an earlier step: RNNDecodingCache does not crop. Decode again "
            "from the shorter prefix instead."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Attention: Bahdanau et al. (2015) additive, Luong et al. (2015) dot and general
# ---------------------------------------------------------------------------------------------------------------------
class RNNAttention(nn.Module):
    """Scores each encoder state h_j against the decoder state s_t, normalises the scores over the source with a
    softmax (padding excluded) and returns the weighted sum of the encoder states, the context c_t.

    additive (Bahdanau et al., Appendix A.1.2): score = v^T tanh(W s_t + U h_j)
    general (Luong et al., §3.1):               score = s_t^T W h_j
    dot (Luong et al., §3.1):                   score = s_t^T h_j
    """

    def __init__(self, config: RNNConfig):
        super().__init__()
        width = config.hidden_size * (2 if config.bidirectional else 1)  # M
        self.kind = config.attention
        if self.kind == "additive":
            self.query_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)  # W
            self.key_proj = nn.Linear(width, config.hidden_size)  # U, whose bias is the one bias inside the tanh
            self.score_proj = nn.Linear(config.hidden_size, 1, bias=False)  # v
        elif self.kind == "general":
            self.key_proj = nn.Linear(width, config.hidden_size, bias=False)  # W

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """The part of every score that depends on the source alone, (B, S, M) -> (B, S, H): U h_j, W h_j or h_j. It
        is computed once per sentence and kept in the decoding cache."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`query` (B, T, H) are decoder states, `keys` (B, S, H) from `keys(memory)`, `memory` (B, S, M) the encoder
        states, `mask` (B, S) True at real source tokens. Returns the contexts (B, T, M) and the weights (B, T, S)."""
        if self.kind == "additive":
            # (B, T, 1, H) + (B, 1, S, H) -> (B, T, S, H) -> (B, T, S, 1) -> (B, T, S)
            scores = self.score_proj(torch.tanh(self.query_proj(query).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.matmul(query, keys.transpose(1, 2))  # (B, T, H) @ (B, H, S) -> (B, T, S)
        if mask is not None:
            # The lowest finite value rather than -inf: a source that is all padding gets uniform weights, not NaN.
            scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)  # (B, 1, S) over T
        weights = scores.softmax(dim=-1)
        return torch.matmul(weights, memory), weights  # (B, T, S) @ (B, S, M) -> (B, T, M)


# ---------------------------------------------------------------------------------------------------------------------
# Encoder and decoder
# ---------------------------------------------------------------------------------------------------------------------
class RNNEncoder(nn.Module):
    """Embeds the source and reads it with one fused (multi-layer, optionally bidirectional) RNN call over packed
    sequences, so that every row stops at its own length."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size)
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = recurrent_stack(config, config.embedding_size, config.encoder_layers, config.bidirectional)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> RNNEncoderOutput:
        """`attention_mask` (B, S) marks real tokens with 1; sources must be right-padded. Other keyword arguments
        (`output_attentions`, `output_hidden_states`, which `generate()` passes) do not apply: the encoder has no
        attention, and the fused RNN exposes only its top layer's states."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids and inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, S) -> (B, S, E)
        batch_size, length = inputs_embeds.shape[:2]
        if attention_mask is None:
            lengths = torch.full((batch_size,), length)
        else:
            lengths = attention_mask.sum(-1).cpu()
            right_padded = torch.arange(length) < lengths.unsqueeze(1)  # (1, S) < (B, 1) -> (B, S)
            if not torch.equal(attention_mask.bool().cpu(), right_padded):
                raise ValueError(
                    "The RNN encoder reads each source up to its length, so sources must be right-padded: "
                    "attention_mask must be ones then zeros on every row. Pad on the right (tokenizer.padding_side = "
                    "'right')."
                )
        # A row of padding only (nothing to translate) reads one pad token: packing refuses empty sequences.
        packed = pack_padded_sequence(
            self.dropout(inputs_embeds), lengths.clamp(min=1), batch_first=True, enforce_sorted=False
        )
        packed_outputs, final = run_stack(self.rnn, packed, None)
        states, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=length)  # (B, S, M)
        directions = 2 if self.rnn.bidirectional else 1
        # nn.GRU/nn.LSTM order their final states layer by layer, directions inside a layer:
        # (Le * dirs, B, H) -> (Le, dirs, B, H) -> (B, Le, dirs, H) -> (B, Le, M)
        final = tuple(f.unflatten(0, (-1, directions)).permute(2, 0, 1, 3).flatten(2) for f in final)
        return RNNEncoderOutput(
            last_hidden_state=states,
            final_hidden_state=final[0],
            final_cell_state=final[1] if len(final) == 2 else None,
        )


class RNNDecoder(nn.Module):
    """Embeds the target, runs the decoder RNN from the encoder's final state, attends over the encoder states (unless
    `attention="none"`), and maps [s_t; c_t] through a tanh layer to the embedding width: the output projection (the
    embedding matrix when tied) turns that into logits. The module docstring says which forms loop over positions."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        width = config.hidden_size * (2 if config.bidirectional else 1)  # M
        self.input_feeding = config.attention == "additive"
        self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_size)
        self.dropout = nn.Dropout(config.dropout)
        rnn_input = config.embedding_size + (width if self.input_feeding else 0)
        self.rnn = recurrent_stack(config, rnn_input, config.decoder_layers)
        # The two directions' final states have twice the decoder's width: a learned map brings them to it. (Bahdanau
        # et al., Appendix A.2.2, start from tanh(W_s h_1) of the backward direction alone; this map reads both.)
        self.bridge = nn.Linear(width, config.hidden_size) if config.bidirectional else None
        self.attention = RNNAttention(config) if config.attention != "none" else None
        self.readout = nn.Linear(
            config.hidden_size + (width if self.attention is not None else 0), config.embedding_size
        )

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding):
        self.embed_tokens = value

    def initial_state(self, encoder_outputs: ModelOutput) -> State:
        """The decoder's state before its first token: the encoder's final state, the top layers of the two stacks
        paired; a decoder layer without an encoder partner starts from zeros."""
        finals = [getattr(encoder_outputs, name, None) for name in ("final_hidden_state", "final_cell_state")]
        if finals[0] is None:
            raise ValueError(
                "encoder_outputs holds no final encoder state, which the RNN decoder starts from: pass the "
                "RNNEncoderOutput that model.get_encoder() returns (or its tuple form)."
            )
        state = []
        for final in finals[: 2 if isinstance(self.rnn, nn.LSTM) else 1]:  # (B, Le, M)
            if self.bridge is not None:
                final = torch.tanh(self.bridge(final))  # (B, Le, M) -> (B, Le, H)
            layers, shared = self.rnn.num_layers, min(self.rnn.num_layers, final.shape[1])
            # (B, Le, H) -> (B, shared, H) -> (B, Ld, H), zeros below -> (Ld, B, H)
            final = F.pad(final[:, final.shape[1] - shared :], (0, 0, layers - shared, 0))
            state.append(final.transpose(0, 1).contiguous())
        return tuple(state)

    def forward(
        self,
        input_ids: torch.LongTensor | None,
        inputs_embeds: torch.Tensor | None,
        encoder_outputs: RNNEncoderOutput,
        encoder_attention_mask: torch.Tensor | None,
        cache: RNNDecodingCache | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the states before the output projection (B, T, E) and the attention weights (B, T, S) (None
        without attention). Continues from `cache` where it holds a state, and leaves the new state there."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of decoder_input_ids and decoder_inputs_embeds.")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T) -> (B, T, E)
        inputs_embeds = self.dropout(inputs_embeds)
        memory = encoder_outputs.last_hidden_state  # (B, S, M)
        mask = encoder_attention_mask.bool() if encoder_attention_mask is not None else None
        if cache is not None and cache.state is not None:
            state, context, keys = cache.state, cache.context, cache.keys
        else:
            state = self.initial_state(encoder_outputs)
            keys = self.attention.keys(memory) if self.attention is not None else None
            context = memory.new_zeros(memory.shape[0], memory.shape[2]) if self.input_feeding else None  # c_0 (B, M)

        if self.input_feeding:
            outputs, contexts, weights = [], [], []
            for position in range(inputs_embeds.shape[1]):
                step = torch.cat([inputs_embeds[:, position], context], dim=-1).unsqueeze(1)  # (B, 1, E + M)
                output, state = run_stack(self.rnn, step, state)  # (B, 1, H)
                step_context, step_weights = self.attention(output, keys, memory, mask)  # (B, 1, M), (B, 1, S)
                context = step_context.squeeze(1)  # (B, M)
                outputs.append(output)
                contexts.append(step_context)
                weights.append(step_weights)
            # T x (B, 1, ...) -> (B, T, ...)
            outputs, contexts, weights = (torch.cat(parts, dim=1) for parts in (outputs, contexts, weights))
        else:
            outputs, state = run_stack(self.rnn, inputs_embeds, state)  # (B, T, H)
            contexts, weights = (None, None) if self.attention is None else self.attention(outputs, keys, memory, mask)

        if cache is not None:
            cache.state, cache.context, cache.keys = state, context, keys
            cache.seen_tokens += inputs_embeds.shape[1]
        features = outputs if contexts is None else torch.cat([outputs, contexts], dim=-1)  # (B, T, H [+ M])
        return self.dropout(torch.tanh(self.readout(features))), weights  # (B, T, E)


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained-model plumbing: initialisation, saving with code, tying (declared, not coded)
# ---------------------------------------------------------------------------------------------------------------------
class RNNPreTrainedModel(PreTrainedModel):
    config: RNNConfig
    base_model_prefix = "model"
    # The code files `save_pretrained` copies beside the weights, for export code that starts from a model class.
    remote_code_files = REMOTE_CODE_FILES

    # Copied from vaswani_hf.modeling_vaswani.VaswaniPreTrainedModel.save_pretrained
    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (safetensors, the shared matrix stored once), plus the code files that
        let the directory load with `trust_remote_code=True` where this package is not installed."""
        super().save_pretrained(save_directory, *args, **kwargs)
        for name in REMOTE_CODE_FILES:
            shutil.copyfile(Path(__file__).with_name(name), Path(save_directory) / name)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """Every weight and bias uniform in [-r, r], r = initializer_range (Luong et al., §4.1; Sutskever et al., §3.4
        with r = 0.08)."""
        if isinstance(module, (nn.Linear, nn.Embedding, nn.RNNBase)):
            r = self.config.initializer_range
            for parameter in module.parameters(recurse=False):
                init.uniform_(parameter, -r, r)


class RNNModel(RNNPreTrainedModel):
    """The encoder-decoder without the output projection: returns the decoder's states before it (B, T, E)."""

    # One matrix for source and target embeddings, as in the Transformer (unless config.tie_word_embeddings is False).
    _tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}

    # Copied from vaswani_hf.modeling_vaswani.VaswaniModel.__init__ with Vaswani->RNN
    def __init__(self, config: RNNConfig):
        super().__init__(config)
        self.encoder = RNNEncoder(config)
        self.decoder = RNNDecoder(config)
        self.post_init()

    # Copied from vaswani_hf.modeling_vaswani.VaswaniModel.get_input_embeddings
    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    # Copied from vaswani_hf.modeling_vaswani.VaswaniModel.set_input_embeddings
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
        encoder_outputs: RNNEncoderOutput | tuple | None = None,
        cache: RNNDecodingCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        r"""
        attention_mask (`(B, S)`): 1 at source tokens, 0 at padding; sources must be right-padded.
        decoder_attention_mask: not needed and not read: the decoder reads left to right, so the right padding of a
            target never reaches an earlier position.
        encoder_outputs: an `RNNEncoderOutput` (or its tuple form) from `get_encoder()`, instead of the source.
        cache: the decoding cache, an `RNNDecodingCache`; also accepted under its name before transformers 5.24,
            `past_key_values`. With `use_cache=True` and no cache, a new one is started and returned.
        output_attentions: return the attention weights as `cross_attentions`, one tensor (B, 1, T, S) (one "head";
            nothing without attention). The model has no self-attention, and its fused RNNs expose no per-layer
            states: `decoder_attentions`, `encoder_attentions` and the `*_hidden_states` stay None.
        """
        cache = pop_cache(cache, kwargs)
        if cache is not None and not isinstance(cache, RNNDecodingCache):
            raise TypeError(
                f"The RNN decoder continues from its recurrent state, which an RNNDecodingCache holds; a "
                f"{type(cache).__name__} has no place for it. Pass no cache (with use_cache=True, one is started and "
                "returned) or the one an earlier call returned."
            )
        if use_cache is None:
            # A cache serves decoding only; in training it would be filled at every step for nothing.
            use_cache = False if self.training else self.config.use_cache
        if use_cache and cache is None:
            cache = RNNDecodingCache()
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
            )
        elif isinstance(encoder_outputs, tuple):
            encoder_outputs = RNNEncoderOutput(*encoder_outputs)
        hidden_states, weights = self.decoder(
            decoder_input_ids, decoder_inputs_embeds, encoder_outputs, attention_mask, cache
        )
        return Seq2SeqModelOutput(
            last_hidden_state=hidden_states,
            **cache_field(cache),
            cross_attentions=(weights.unsqueeze(1),) if output_attentions and weights is not None else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        )


# ---------------------------------------------------------------------------------------------------------------------
# The model with the output projection
# ---------------------------------------------------------------------------------------------------------------------
# Copied from vaswani_hf.modeling_vaswani.token_cross_entropy
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


class RNNForConditionalGeneration(StatefulGenerationMixin, GNMTBeamSearchMixin, RNNPreTrainedModel, GenerationMixin):
    """The encoder-decoder with its output projection (the embedding matrix, when tied) and `generate()`; a
    recurrent state cannot be rolled back, so assisted decoding is refused (`StatefulGenerationMixin`).

    It decodes as the Transformer does (§6.1 of Vaswani et al.: beam 4, GNMT length penalty 0.6, at most source length
    + 50 tokens), so that the two models compare as networks, not as decoders."""

    _tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}

    # Copied from vaswani_hf.modeling_vaswani.VaswaniForConditionalGeneration.__init__ with Vaswani->RNN, d_model->embedding_size
    def __init__(self, config: RNNConfig):
        super().__init__(config)
        self.model = RNNModel(config)
        # No bias: the projection is the transposed embedding matrix alone.
        self.lm_head = nn.Linear(config.embedding_size, config.vocab_size, bias=False)
        self.post_init()
        self.generation_config = paper_generation_config(config)

    # Copied from vaswani_hf.modeling_vaswani.VaswaniForConditionalGeneration.get_output_embeddings
    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    # Copied from vaswani_hf.modeling_vaswani.VaswaniForConditionalGeneration.set_output_embeddings
    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    # Copied from vaswani_hf.modeling_vaswani.VaswaniForConditionalGeneration.shift_tokens_right
    def shift_tokens_right(self, labels: torch.Tensor) -> torch.Tensor:
        """Decoder inputs from labels: <s> then the labels without their last token, -100 read as <pad>."""
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    prepare_decoder_input_ids_from_labels = shift_tokens_right

    # Copied from vaswani_hf.modeling_vaswani.VaswaniForConditionalGeneration._decoder_input_ids
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

    # Not a copy of VaswaniForConditionalGeneration.forward: RNNModel takes output_attentions as an argument of its
    # own, and has no self-attention or per-layer states to return.
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: RNNEncoderOutput | tuple | None = None,
        cache: RNNDecodingCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        r"""
        The arguments of `RNNModel.forward`, and:

        labels (`(B, T)`): target ids ending with </s>, -100 where no loss is wanted. Decoder inputs are the labels
            shifted right behind <s> unless given.
        num_items_in_batch: the number of target tokens (labels != -100) in the whole update, across gradient
            accumulation steps and processes; `Trainer` passes it. The loss is the sum over this batch divided by it,
            so accumulated gradients equal those of one large batch. Without it, the mean over this batch's tokens.

        The loss is the cross-entropy against `labels`, as VaswaniForConditionalGeneration's: label smoothing belongs
        to the training recipe.
        """
        cache = pop_cache(cache, kwargs)
        decoder_input_ids = self._decoder_input_ids(labels, decoder_input_ids, decoder_inputs_embeds)
        outputs: Seq2SeqModelOutput = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            # Training reads no cache; an explicit False, because None would take the config's default (True).
            use_cache=False if labels is not None else use_cache,
            output_attentions=output_attentions,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, E) @ (E, V) -> (B, T, V)
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels, self.config.pad_token_id, num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **cache_field(output_cache(outputs)),
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
        )

    @torch.no_grad()
    def generate(
        self, inputs=None, generation_config: GenerationConfig | None = None, logits_processor=None, **kwargs
    ):
        """`GenerationMixin.generate` with the Transformer's decoding as the saved defaults (beam 4, GNMT length
        penalty 0.6, at most source length + `max_length_offset` tokens per sentence; see
        `generation_vaswani.add_source_length_limit`), decoding with an `RNNDecodingCache` unless the call passes a
        cache or turns caching off (`use_cache=False`: every step reads the whole prefix again). The cache goes in
        through generate's own cache argument: left to itself, transformers would build a key/value cache, which has
        no place for a recurrent state."""
        defaults = generation_config if generation_config is not None else self.generation_config
        logits_processor = add_source_length_limit(self, inputs, generation_config, kwargs, logits_processor)
        use_cache = kwargs["use_cache"] if kwargs.get("use_cache") is not None else defaults.use_cache
        if use_cache is not False and kwargs.get(CACHE_ARG) is None and kwargs.get(LEGACY_CACHE_ARG) is None:
            kwargs[CACHE_ARG] = RNNDecodingCache()
        return super().generate(
            inputs, generation_config=generation_config, logits_processor=logits_processor, **kwargs
        )


__all__ = ["RNNDecodingCache", "RNNEncoderOutput", "RNNForConditionalGeneration", "RNNModel", "RNNPreTrainedModel"]
