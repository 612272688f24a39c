"""Everything this package assumes about transformers beyond its public API, in one place.

transformers moves fast inside the 5.x line (5.24 renamed the decoding cache argument), so each assumption that is not
public, stable API lives here, with the releases it holds for. `tests/test_transformers_adapter.py` checks every one
against the installed transformers and fails naming its version when one no longer holds.

This file is part of the code saved beside the weights (see `modeling_vaswani.REMOTE_CODE_FILES`), so it imports
only torch and transformers.
"""

import copy
import warnings

import transformers
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.modeling_utils import PreTrainedModel

TRANSFORMERS_VERSION = transformers.__version__

# ---------------------------------------------------------------------------------------------------------------------
# 1. The name of the decoding cache. transformers up to 5.23 passes it to `forward` as `past_key_values` and returns it
#    in the output field of that name; 5.24 calls both `cache` (the old name is deprecated, to go in 5.40). The output
#    dataclasses tell which name the installed release uses, whatever its version number says.
# ---------------------------------------------------------------------------------------------------------------------
CACHE_ARG = "cache" if "cache" in Seq2SeqLMOutput.__dataclass_fields__ else "past_key_values"
LEGACY_CACHE_ARG = "past_key_values"


def pop_cache(cache, kwargs: dict):
    """The decoding cache a `forward` was given, under the current name (`cache`) or the old one (`past_key_values`,
    which transformers before 5.24 passes). Where the installed release has renamed it, the old name warns as
    transformers' own models do (`FutureWarning`); where it has not, the old name is the one generate() uses."""
    legacy = kwargs.pop(LEGACY_CACHE_ARG, None)
    if cache is not None and legacy is not None and cache is not legacy:
        raise ValueError(f"Pass the decoding cache once, as `cache=` or as `{LEGACY_CACHE_ARG}=`, not both.")
    if legacy is not None and CACHE_ARG != LEGACY_CACHE_ARG:
        warnings.warn(
            f"`{LEGACY_CACHE_ARG}` is deprecated since transformers 5.24 (to be removed in 5.40). Use `cache` "
            "instead.",
            FutureWarning,
            stacklevel=3,
        )
    return cache if cache is not None else legacy


def cache_field(cache) -> dict:
    """The output field that holds the cache, under the installed release's name: `Output(**cache_field(cache))`."""
    return {CACHE_ARG: cache}


def output_cache(output):
    """The cache an output returns (read under the installed release's name, so that 5.24 logs no deprecation)."""
    return getattr(output, CACHE_ARG)


# ---------------------------------------------------------------------------------------------------------------------
# 2. The GNMT length penalty in beam search. transformers' beam search (`GenerationMixin._beam_search` and the
#    helpers it calls, 5.6 to 5.24) reads `generation_config.length_penalty` once and only ever uses it as
#    `length ** length_penalty` and in comparisons with 0. No public option changes the form of the penalty, so the
#    beam search runs with a `length_penalty` object whose `length ** penalty` is the GNMT penalty instead.
# ---------------------------------------------------------------------------------------------------------------------
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


class GNMTBeamSearchMixin:
    """Gives a `GenerationMixin` model's beam search the GNMT length penalty when its generation config says
    `length_penalty_type="gnmt"`; any other value leaves transformers' `|Y| ** length_penalty`. Goes before
    `GenerationMixin` in the bases, whose private `_beam_search` it wraps."""

    def _beam_search(self, *args, **kwargs):
        if "generation_config" not in kwargs:
            raise RuntimeError(
                f"transformers {TRANSFORMERS_VERSION} calls _beam_search without `generation_config=`: the GNMT length "
                "penalty of vaswani_hf.transformers_adapter needs updating for it."
            )
        generation_config = kwargs["generation_config"]
        if getattr(generation_config, "length_penalty_type", "power") == "gnmt":
            generation_config = copy.copy(generation_config)
            generation_config.length_penalty = GNMTLengthPenalty(generation_config.length_penalty)
            kwargs["generation_config"] = generation_config
        return super()._beam_search(*args, **kwargs)


# ---------------------------------------------------------------------------------------------------------------------
# 3. The `translation` pipeline task. transformers 5 dropped it; from 5.20 `pipeline()` also refuses the name through
#    the dict `transformers.pipelines.REMOVED_TASKS` before it looks at registered tasks. There is no public way to
#    register a task of that name, so the entry is removed from the dict (where the dict exists).
# ---------------------------------------------------------------------------------------------------------------------
def allow_translation_task() -> None:
    """Lets `pipeline("translation", ...)` reach the task registered under that name."""
    from transformers import pipelines

    removed = getattr(pipelines, "REMOVED_TASKS", None)
    if removed is not None:
        removed.pop("translation", None)


# ---------------------------------------------------------------------------------------------------------------------
# 4. Refusing assisted decoding of a recurrent model, whose state cannot be taken back to an earlier step. Up to 5.24
#    `generate()` refuses it before decoding when the model class sets the private `_is_stateful` (declared on
#    `PreTrainedModel`); 5.25 removed that attribute and refuses after the first forward, when the cache's public
#    `is_croppable` is false (which `RNNDecodingCache` declares). The mixin keeps the refusal up front on the releases
#    that still read it.
# ---------------------------------------------------------------------------------------------------------------------
READS_IS_STATEFUL = hasattr(PreTrainedModel, "_is_stateful") or hasattr(GenerationMixin, "_is_stateful")


class StatefulGenerationMixin:
    """Marks a `GenerationMixin` model whose decoding state cannot be cropped, for transformers releases up to 5.24."""

    _is_stateful = True
