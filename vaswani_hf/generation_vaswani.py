"""The paper's decoding (§6.1): beam size 4, the GNMT length penalty with alpha 0.6, and a maximum output length of
input length + 50, as pieces that plug into transformers' `generate()`. `VaswaniForConditionalGeneration.generate`
puts them together; they live in their own file to keep the modeling file to the architecture.
"""

import math

import torch
from transformers.generation import LogitsProcessor

PAPER_DECODING = dict(
    num_beams=4,
    length_penalty=0.6,
    length_penalty_type="gnmt",
    max_length_offset=50,
    # Finish a sentence's search once `num_beams` hypotheses have ended, as fairseq does: the paper says only that
    # it "terminates early when possible".
    early_stopping=True,
)


class GNMTLengthPenalty:
    """lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016), the penalty of §6.1.

    transformers' beam search divides a finished hypothesis' log-probability by `length ** length_penalty`. Passing
    this object as `length_penalty` turns that expression into the GNMT form exactly: Python evaluates
    `length ** penalty` as `penalty.__rpow__(length)`. |Y| counts the generated tokens including the final </s>, as
    tensor2tensor's beam search does.
    """

    def __init__(self, alpha: float):
        self.alpha = float(alpha)

    def __rpow__(self, length):
        return ((5.0 + length) / 6.0) ** self.alpha

    # Beam search compares the penalty with 0 to decide whether longer hypotheses could still win.
    def __gt__(self, other):
        return self.alpha > other

    def __lt__(self, other):
        return self.alpha < other


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
