"""The paper's decoding (§6.1): beam size 4, the GNMT length penalty with alpha 0.6, and a maximum output length of
input length + 50, as data and pieces that plug into transformers' `generate()`: generation-config defaults, a logits
processor for the length limit, and the cache `generate()` decodes with. `VaswaniForConditionalGeneration.generate`
puts them together; they live in their own file to keep the modeling file to the architecture. (The GNMT penalty needs
one hook into transformers' beam search, kept with the other such assumptions in transformers_adapter.py.)
"""

import math

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer, EncoderDecoderCache
from transformers.generation import GenerationConfig, LogitsProcessor, LogitsProcessorList

PAPER_DECODING = dict(
    num_beams=4,
    length_penalty=0.6,
    length_penalty_type="gnmt",
    max_length_offset=50,
    # Finish a sentence's search once `num_beams` hypotheses have ended, as fairseq does: the paper says only that
    # it "terminates early when possible".
    early_stopping=True,
)


def paper_generation_config(config) -> GenerationConfig:
    """The generation config a model starts with: the paper's decoding (`PAPER_DECODING`) with the special tokens of
    `config`, its model config. Built afresh rather than derived from the model config: a generation config marked as
    derived loses its custom entries (length_penalty_type, max_length_offset) when it is loaded again."""
    return GenerationConfig(
        **PAPER_DECODING,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )


class SourceLengthLimit(LogitsProcessor):
    """Forces </s> so that no output has more tokens than its own source plus `offset` (§6.1: "maximum output
    length to input length + 50"). Counts include </s> on both sides; the decoder start token is not counted.
    The limit is per sentence, so a translation does not depend on what it was batched with. `max_length` caps it
    where the model has fewer positions than a long source plus `offset` would need."""

    def __init__(self, source_lengths: torch.Tensor, offset: int, eos_token_id: int, max_length: int | None = None):
        self.limits = source_lengths + offset  # (B,)
        if max_length is not None:
            self.limits = self.limits.clamp(max=max_length)
        self.eos_token_id = eos_token_id
        self.prompt_length = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        generated = input_ids.shape[1] - self.prompt_length
        # generate() repeats each sentence once per beam or returned sequence, next to each other.
        limits = self.limits.to(scores.device).repeat_interleave(input_ids.shape[0] // self.limits.shape[0])
        at_limit = (generated + 1 >= limits).unsqueeze(1)  # (B * beams, 1): the next token is the last allowed
        forced = torch.full_like(scores, -math.inf)
        forced[:, self.eos_token_id] = scores[:, self.eos_token_id]
        return torch.where(at_limit, forced, scores)


def source_lengths(inputs: torch.Tensor | None, kwargs: dict, pad_token_id: int) -> torch.Tensor:
    """Source lengths in tokens (B,) of a `generate()` call: from the attention mask, else the non-pad input ids, else
    the full width of given encoder outputs or embeddings."""
    if kwargs.get("attention_mask") is not None:
        return kwargs["attention_mask"].sum(-1)
    input_ids = inputs if inputs is not None else kwargs.get("input_ids")
    if input_ids is not None:
        return (input_ids != pad_token_id).sum(-1)
    states = kwargs.get("encoder_outputs") or (kwargs.get("inputs_embeds"),)
    states = states[0]
    return torch.full((states.shape[0],), states.shape[1], device=states.device)


def source_length_offset(defaults: GenerationConfig, generation_config, kwargs: dict) -> int | None:
    """The offset of the output limit (source length + offset, §6.1) that a `generate()` call, of a model whose
    generation config is `defaults`, with `generation_config` and `kwargs` decodes with; None where the call sets a
    limit of its own or switches this one off.

    The limit applies unless the call passes `max_length` or `max_new_tokens` (or a `generation_config` with
    `max_new_tokens`); `max_length_offset=None` (in the call or the generation config) switches it off. A setting the
    call does not make comes from the model's generation config, as transformers fills every field a passed
    `generation_config` leaves unset: a GenerationConfig(num_beams=4) keeps input + 50.
    """
    if "max_length_offset" in kwargs:
        offset = kwargs["max_length_offset"]
    elif generation_config is not None and hasattr(generation_config, "max_length_offset"):
        offset = generation_config.max_length_offset
    else:
        offset = getattr(defaults, "max_length_offset", None)
    explicit_limit = any(kwargs.get(k) is not None for k in ("max_length", "max_new_tokens")) or (
        generation_config is not None
        and (generation_config.max_new_tokens is not None or "max_length" in generation_config.to_diff_dict())
    )
    return None if explicit_limit else offset


def add_source_length_limit(model, inputs, generation_config, kwargs: dict, logits_processor):
    """Sets up the paper's per-sentence output limit (§6.1) for one `generate()` call of `model`: a `SourceLengthLimit`
    after `logits_processor`, and `kwargs["max_new_tokens"]` at the longest sentence's limit. Returns the logits
    processors to pass on. When the limit applies is `source_length_offset`'s to say.
    """
    offset = source_length_offset(model.generation_config, generation_config, kwargs)
    kwargs.pop("max_length_offset", None)
    if offset is None:
        return logits_processor
    # The decoder reads <s> plus all but the last output token: outputs fit in max_position_embeddings (a recurrent
    # model has no such limit).
    limit = SourceLengthLimit(
        source_lengths(inputs, kwargs, model.config.pad_token_id),
        offset,
        model.config.eos_token_id,
        max_length=getattr(model.config, "max_position_embeddings", None),
    )
    kwargs["max_new_tokens"] = int(limit.limits.max())
    return LogitsProcessorList([*(logits_processor or []), limit])


class GrowingCacheLayer(DynamicLayer):
    """A `DynamicLayer` that writes each step's keys and values into a preallocated buffer, doubled when full.

    `DynamicLayer` concatenates, which copies the whole cache at every step: O(T^2) copying over a T-token output,
    and a new allocation per step and layer. Here a step copies only its own keys and values; `keys` and `values`
    are views of the filled part, so everything that reads them (attention, `get_seq_length`) works unchanged. If
    something outside replaces `keys`/`values` (crop, batch selection), the next update adopts the new tensors.
    """

    initial_capacity = 64

    def __init__(self, capacity: int | None = None):
        super().__init__()
        self.capacity = capacity or self.initial_capacity
        self._buffers = None  # (keys, values), each (B, H, capacity, D)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        needed = length + key_states.shape[-2]
        buffers = self._buffers
        if (
            buffers is None
            or (self.keys.numel() and self.keys.data_ptr() != buffers[0].data_ptr())  # replaced from outside
            or buffers[0].shape[0] != key_states.shape[0]
            or needed > buffers[0].shape[2]
        ):
            buffers = self._grow(key_states, value_states, length, needed)
        buffers[0][:, :, length:needed] = key_states
        buffers[1][:, :, length:needed] = value_states
        self.keys, self.values = buffers[0][:, :, :needed], buffers[1][:, :, :needed]  # (B, H, L, D)
        return self.keys, self.values

    def _grow(self, key_states, value_states, length, needed):
        # The first allocation takes the capacity asked for (generate() knows its maximum length); later ones double.
        capacity = max(self.capacity, 2 * needed if self._buffers is not None else needed)
        self._buffers = tuple(
            new.new_empty((new.shape[0], new.shape[1], capacity, new.shape[3])) for new in (key_states, value_states)
        )
        if length:
            self._buffers[0][:, :, :length] = self.keys
            self._buffers[1][:, :, :length] = self.values
        return self._buffers

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: row i takes the cache of beam `beam_idx[i]`, in place. The gather goes through a temporary of
        one tensor's filled part, so the peak is the buffers plus that. A second set of buffers to gather into,
        swapped in at every step, saved that copy but doubled the cache, the largest part of decoding's peak memory
        (docs/speed.md, "Memory")."""
        length = self.get_seq_length()
        if not length:
            return
        beam_idx = beam_idx.to(self._buffers[0].device)
        for buffer in self._buffers:
            buffer[:, :, :length] = buffer[:, :, :length].index_select(0, beam_idx)  # (B, H, L, D)
        self.keys, self.values = self._buffers[0][:, :, :length], self._buffers[1][:, :, :length]

    def reset(self) -> None:
        self._buffers = None
        super().reset()


class DecodingCache(EncoderDecoderCache):
    """The cache `generate()` decodes with: growing self-attention layers with room for `capacity` positions at
    first, and the cross-attention keys and values of the encoder output, computed once (by the first decoding step)
    and only read afterwards.

    `generate()` repeats each sentence's encoder output once per beam (or returned sequence), `row_group` times in
    consecutive rows. Cross-attention stores the keys and values of one copy per sentence (`VaswaniAttention` checks
    that the rows are copies): 1/row_group of the memory, of the projection work, and of the reads at every step.
    """

    def __init__(self, config, capacity: int | None = None, row_group: int = 1):
        self_attention = Cache(layers=[GrowingCacheLayer(capacity) for _ in range(config.decoder_layers)])
        super().__init__(self_attention, DynamicCache(config=config))
        self.row_group = row_group

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: only the self-attention cache follows the chosen beams. All beams of a sentence hold the same
        encoder keys and values, and a beam only ever continues a beam of its own sentence, so reordering the
        cross-attention cache (what `EncoderDecoderCache` does) would copy it onto itself at every step; with one
        copy per sentence there is nothing to reorder."""
        self.self_attention_cache.reorder_cache(beam_idx)


def one_row_per_group(states: torch.Tensor, group: int) -> torch.Tensor:
    """`states` (B, S, d) as (B/group, S, d) if each run of `group` consecutive rows holds copies of one row (how
    `generate()` repeats the encoder output per beam), else unchanged."""
    if group > 1 and states.shape[0] % group == 0:
        distinct = states[::group]  # (B/g, S, d)
        if torch.equal(distinct.repeat_interleave(group, dim=0), states):
            return distinct
    return states


def group_mask(mask: torch.Tensor | None, group: int) -> torch.Tensor | None:
    """The cross-attention mask of one row per group, for queries of the group's g beams one after another: beams of
    one sentence share its padding. A (B, 1, T, S) mask becomes (B/g, 1, gT, S); a (B, S) one (B/g, S)."""
    if mask is None or group == 1:
        return mask
    mask = mask[::group]
    if mask.dim() == 4 and mask.shape[2] > 1:
        mask = mask.repeat(1, 1, group, 1)  # (B/g, 1, T, S) -> (B/g, 1, gT, S)
    return mask
