"""What the card states about each setting against the paper: where the paper fixes it, or why it does not count.

`paper_departures` compares a model's config, its run config and its saved decoding with the preset of the Table 3 row
the run started from (`model.preset`), and the training corpus with the paper's (§5.1); every difference is listed,
those the paper fixes apart from the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...configuration_vaswani import VaswaniConfig
from ...generation_vaswani import PAPER_DECODING
from ...training.run_config import SETTINGS, RunConfig
from .corpus import DataProvenance

# The paper's training data (§5.1), against which a run's corpus is compared.
PAPER_CORPUS = "hub:wmt14:de-en"
PAPER_DATA = "WMT 2014 English-German, about 4.5M sentence pairs (§5.1)"
PAPER_LANGUAGES = ("en", "de")

# Where the paper fixes each setting; a setting missing here is still compared, only without its section. Run-config
# keys and the model-config fields they set come from their `setting(paper=...)`; the decoding is the generation
# config's, not a run setting.
DECODING_SECTIONS = {
    "num_beams": "beam size (§6.1)",
    "length_penalty": "length penalty alpha (§6.1)",
    "length_penalty_type": "length penalty form (§6.1: GNMT)",
    "max_length_offset": "output limit: source length + this (§6.1)",
    "early_stopping": "ending the search early (§6.1)",
}
PAPER_SECTIONS = {
    **{key: s.paper for key, s in SETTINGS.items() if s.paper and s.compared == "preset"},
    # A model setting names the config field it sets (`model.d_model` → `d_model`, `data.vocab_size` → `vocab_size`).
    **{key.rpartition(".")[2]: s.paper for key, s in SETTINGS.items() if s.paper and s.compared == "model"},
    **DECODING_SECTIONS,
}
# Model-config fields the paper says nothing about, or that do not change what the model computes.
CONFIG_FIELDS_NOT_IN_PAPER = {
    "max_position_embeddings": "longest accepted sequence",
    "layer_norm_eps": "LayerNorm epsilon",
    "use_cache": "decoder cache at inference",
    "is_encoder_decoder": "model layout",
    "pad_token_id": "token id",
    "bos_token_id": "token id",
    "eos_token_id": "token id",
    "decoder_start_token_id": "token id",
}
# Run-config keys the paper says nothing about, or that do not change the trained weights (`setting(aside=...)`).
RUN_KEYS_NOT_IN_PAPER = {key: s.aside for key, s in SETTINGS.items() if s.aside}
# Run-config keys compared otherwise (`setting(compared=...)`): the model's through its config against Table 3, the
# corpus and languages with the paper's data (the presets name the built-in corpus, not WMT 2014).
RUN_KEYS_COMPARED_ELSEWHERE = {key for key, s in SETTINGS.items() if s.compared != "preset"}


@dataclass
class Difference:
    """One setting whose value differs from the paper's (`paper`) in this model or run (`value`)."""

    key: str
    paper: object
    value: object
    about: str


@dataclass
class Departures:
    """`from_paper`: settings the paper fixes and this model changes. `other`: differences from the paper preset in
    settings the paper does not fix or that do not change the weights (listed so that every difference is shown)."""

    from_paper: list[Difference]
    other: list[Difference]


def paper_reference(run_config: RunConfig) -> tuple[VaswaniConfig, RunConfig]:
    """The paper's model config and recipe for the Table 3 row the run started from (`model.preset`)."""
    preset = run_config.model.preset
    config = VaswaniConfig.big() if preset == "big" else VaswaniConfig.base()
    return config, RunConfig.load(preset)


def paper_departures(
    config: dict, run_config: RunConfig, generation_config: dict | None, data: DataProvenance | None = None
) -> Departures:
    """Every difference between this model and the paper's preset it started from (`model.preset`, `base` or `big`):
    the model config against `VaswaniConfig.base()`/`.big()`, the run config against the preset YAML, the saved
    decoding against the paper's (§6.1), and the training corpus against WMT 2014 English-German (described by
    `data` where given)."""
    reference_config, reference_run = paper_reference(run_config)
    from_paper: list[Difference] = []
    other: list[Difference] = []

    if config.get("model_type") != VaswaniConfig.model_type:
        # Another network altogether: its fields have no counterpart in Table 3, so the network is one departure.
        network = (config.get("architectures") or [config.get("model_type")])[0]
        from_paper.append(Difference("model", "the Transformer (§3)", network, "the network (§3)"))
    # The model's own config is the truth about the architecture (the run config's model section only overrides).
    for name in VaswaniConfig.__annotations__ if not from_paper else ():
        paper, value = getattr(reference_config, name), config.get(name, getattr(reference_config, name))
        if value == paper:
            continue
        if name in CONFIG_FIELDS_NOT_IN_PAPER:
            other.append(Difference(name, paper, value, CONFIG_FIELDS_NOT_IN_PAPER[name]))
        else:
            from_paper.append(Difference(name, paper, value, PAPER_SECTIONS.get(name, "")))

    ours, theirs = run_config.to_flat_dict(), reference_run.to_flat_dict()
    for key, value in ours.items():
        paper = theirs.get(key)
        if value == paper or key in RUN_KEYS_COMPARED_ELSEWHERE:
            continue
        if key in RUN_KEYS_NOT_IN_PAPER:
            other.append(Difference(key, paper, value, RUN_KEYS_NOT_IN_PAPER[key]))
        else:
            from_paper.append(Difference(key, paper, value, PAPER_SECTIONS.get(key, "")))

    decoding = generation_config or {}
    for key, paper in PAPER_DECODING.items():
        if decoding.get(key) != paper:
            from_paper.append(Difference(f"generation.{key}", paper, decoding.get(key), PAPER_SECTIONS.get(key, "")))

    languages = (run_config.data.src_lang, run_config.data.tgt_lang)
    if (run_config.data.corpus, *languages) != (PAPER_CORPUS, *PAPER_LANGUAGES):
        corpus = f"{run_config.data.corpus} ({run_config.data.src_lang}→{run_config.data.tgt_lang})"
        if data is not None and data.dataset_name:
            corpus = f"{data.dataset_name}, {run_config.data.src_lang}→{run_config.data.tgt_lang}"
            if "train" in data.split_sizes:
                corpus += f", {data.split_sizes['train']:,} sentence pairs"
        from_paper.append(Difference("data.corpus", PAPER_DATA, corpus, "training corpus (§5.1)"))
    return Departures(from_paper, other)
