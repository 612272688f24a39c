"""Typed run configurations for `vaswani-train`: a YAML file (or a named preset) plus `section.key=value` overrides.

Every key is a dataclass field. An unknown key, a value of the wrong type or a value out of range is an error that
names the key, so a typo never trains a different model than the one asked for.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class ModelArgs:
    """The architecture: a `VaswaniConfig` preset (Table 3 row) and any fields that depart from it.

    `architecture` picks the transformers model the recipe trains: this package's `vaswani`; transformers' own
    `marian` (`MarianMTModel`, post-norm with fixed sinusoidal positions, given the same sizes); or this package's
    recurrent encoder-decoder `rnn` (`RNNConfig`: its defaults, then the fields set here among `cell`,
    `bidirectional`, `attention`, `hidden_size`, `embedding_size`, the layer counts, `dropout` and
    `tie_word_embeddings`). The recipe itself (batching, Eq. 3, loss, checkpoints, averaging, validation) is the same
    for all; `vaswani_hf.training.architectures` builds the model config and refuses a field the architecture lacks.
    """

    architecture: Literal["vaswani", "marian", "rnn"] = "vaswani"
    preset: Literal["base", "big"] = "base"
    d_model: int | None = None
    d_ff: int | None = None
    num_heads: int | None = None
    encoder_layers: int | None = None
    decoder_layers: int | None = None
    dropout: float | None = None
    attention_dropout: float | None = None
    norm_first: bool | None = None
    position_embedding_type: Literal["sinusoidal", "learned"] | None = None
    tie_word_embeddings: bool | None = None
    max_position_embeddings: int | None = None
    # The recurrent model's own fields (architecture rnn only).
    cell: Literal["gru", "lstm"] | None = None
    bidirectional: bool | None = None
    attention: Literal["none", "additive", "dot", "general"] | None = None
    hidden_size: int | None = None
    embedding_size: int | None = None
    # The attention kernel (same results, different speed); None lets transformers choose (sdpa where available).
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = None

    def overrides(self) -> dict:
        """The architecture fields set here (every field but `architecture`, `preset` and the kernel)."""
        skip = ("architecture", "preset", "attn_implementation")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip and v is not None}


@dataclass
class DataArgs:
    """The corpus, its cleaning and the tokenizer."""

    # "default" is the built-in English-German corpus (LibreOffice help + Ding example sentences); anything else goes
    # to `vaswani_hf.data.parallel.load_parallel`: a prefix of aligned text files, a .tsv, a .jsonl, a saved dataset, hub:NAME.
    corpus: str = "default"
    validation: str | None = None
    src_lang: str = "en"
    tgt_lang: str = "de"
    # A saved tokenizer to reuse; None trains a shared BPE of `vocab_size` on the training split (§5.1).
    tokenizer: str | None = None
    vocab_size: int = 37000
    # Pairs longer than this many tokens on either side are dropped after tokenization.
    max_length: int = 256
    clean: bool = True
    max_words: int = 250
    max_ratio: float = 3.0
    # Validation sentences translated for BLEU during training (beam search is slow; loss uses the whole split).
    bleu_sentences: int = 500


@dataclass
class TrainArgs:
    """Batching, optimiser and schedule (§5.1-§5.3)."""

    # Padded tokens per micro-batch and process (max of source and target side, as fairseq counts).
    max_tokens: int = 4096
    # Target tokens per optimizer update, summed over micro-batches and processes: about 25000 in §5.1.
    update_tokens: int = 25000
    warmup_steps: int = 4000
    # Multiplies Eq. 3; 1.0 is the paper.
    lr_scale: float = 1.0
    # epsilon_ls of the training loss (§5.4); validation reports it beside the plain cross-entropy and perplexity.
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    # Gradient-norm clipping; the paper has none.
    clip_norm: float | None = None
    max_steps: int | None = 100000
    max_epochs: int | None = None
    # Wall-clock training budget; validation and checkpointing time is not counted.
    max_minutes: float | None = None
    # "auto": bf16 where the GPU or CPU multiplies it in hardware, fp32 elsewhere (`vaswani_hf.training.precision`).
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = "no"
    seed: int = 1
    log_every: int = 50


@dataclass
class CheckpointArgs:
    """When to checkpoint, how many to keep and average (§6.1: every 10 minutes, average the last 5 or 20)."""

    every_minutes: float | None = 10.0
    every_steps: int | None = None
    keep: int = 20
    average_last: int = 5


@dataclass
class EvalArgs:
    """Validation during training and the final evaluation."""

    every_steps: int | None = 1000
    # Beam size for validation BLEU; the final evaluation uses the paper's decoding from the generation config.
    num_beams: int = 4
    max_tokens: int = 8192


@dataclass
class RunConfig:
    """Everything `vaswani-train` needs; load with `RunConfig.load(...)`."""

    output_dir: str = "outputs/run"
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)

    @classmethod
    def load(cls, config: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
        """A preset name (`base`, `big`, `small-cpu`) or YAML path, then `section.key=value` overrides."""
        data: dict = {}
        if config is not None:
            path = Path(config)
            if not path.suffix and (PRESET_DIR / f"{config}.yaml").exists():
                path = PRESET_DIR / f"{config}.yaml"
            if not path.exists():
                raise FileNotFoundError(
                    f"Run config {config!r} is neither a YAML file nor a preset; presets: {', '.join(presets())}."
                )
            data = yaml.safe_load(path.read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{path} must hold a mapping of sections, got {type(data).__name__}.")
            _migrate(data)
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"Override {item!r} must look like section.key=value, e.g. train.lr_scale=2.0.")
            *sections, leaf = key.split(".")
            node = data
            for section in sections:
                node = node.setdefault(section, {})
                if not isinstance(node, dict):
                    raise ValueError(f"Override {item!r}: {section!r} is not a section.")
            node[leaf] = _parse_override(value, _field_type(cls, [*sections, leaf]), key)
        return _build(cls, data, "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_flat_dict(self) -> dict:
        """`{"output_dir": ..., "model.d_model": ..., "train.lr_scale": ...}`: one entry per setting, keyed as in
        overrides."""
        flat = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                flat.update({f"{key}.{leaf}": leaf_value for leaf, leaf_value in value.items()})
            else:
                flat[key] = value
        return flat

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def resume_conflicts(self, saved: RunConfig) -> dict[str, tuple]:
        """The settings in which this config differs from `saved`, the config of the run it would resume, and that a
        resumed run may not change: `{key: (saved value, this value)}`. See `RESUMABLE`."""
        ours, theirs = self.to_flat_dict(), saved.to_flat_dict()
        return {
            key: (theirs.get(key), value)
            for key, value in ours.items()
            if key not in RESUMABLE and theirs.get(key) != value
        }


# What a resumed run may change: how long it trains, how it logs, checkpoints and validates, and the attention kernel
# (the same results). Every other setting shapes the data plan (corpus, cleaning, tokenizer, batch sizes, seed), the
# schedule, the loss or the model, which the position saved in a checkpoint assumes.
RESUMABLE = {
    "output_dir",
    "model.attn_implementation",
    "data.validation",
    "data.bleu_sentences",
    "train.max_steps",
    "train.max_epochs",
    "train.max_minutes",
    "train.log_every",
    "checkpoint.every_minutes",
    "checkpoint.every_steps",
    "checkpoint.keep",
    "checkpoint.average_last",
    "eval.every_steps",
    "eval.num_beams",
    "eval.max_tokens",
}


def _migrate(data: dict) -> None:
    """Run configs saved before label smoothing moved from `model` to `train` (it is the training loss's, not the
    model's) still load: a set `model.label_smoothing` becomes `train.label_smoothing`, a null one is dropped."""
    model = data.get("model")
    if isinstance(model, dict) and "label_smoothing" in model:
        value = model.pop("label_smoothing")
        train = data.setdefault("train", {})
        if value is not None and isinstance(train, dict):
            train.setdefault("label_smoothing", value)


def _field_type(cls, keys: list[str]):
    """The type of the run-config field at `keys` (e.g. ["train", "lr_scale"]), or None if there is no such field."""
    hint = cls
    for key in keys:
        hints = typing.get_type_hints(hint) if dataclasses.is_dataclass(hint) else {}
        if key not in hints:
            return None
        hint = hints[key]
    return hint


def _parse_override(text: str, hint, key: str):
    """The value of an override's `text` for a field of type `hint`: YAML's reading of it when that has the type
    (numbers, true/false, null, quoted strings), else the text itself when a str has the type. YAML alone would read
    `train.mixed_precision=no` or `data.src_lang=no` as False, and `data.corpus=2014` as an int. An empty text is null.
    """
    if not text:
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:  # e.g. a path starting with "@": not YAML, but a str field takes it as it is
        value = text
    # An unknown key or a whole section: left as read, for _build to name or check.
    if hint is None or dataclasses.is_dataclass(hint):
        return value
    for candidate in (value, text):
        try:
            return _check(candidate, hint, key)
        except ValueError:
            pass
    # Wrong either way: _build's check names the key, the type and YAML's reading of the text.
    return value


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'The run config'} must be a mapping, got {data!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
        raise ValueError(f"Unknown run-config key '{prefix}{key}'.{hint} Known keys: {', '.join(fields)}.")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value if value is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _check(value, hint, f"{prefix}{name}")
    config = cls(**kwargs)
    _validate(config, prefix)
    return config


def _check(value, hint, key: str):
    """`value` if it has type `hint` (ints are accepted for floats), else a ValueError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _check(value, option, key)
            except ValueError as error:
                errors.append(error)
        # A NaN or infinity is refused as such, not as a value of the wrong type.
        for error in errors:
            if "finite number" in str(error):
                raise error
        raise ValueError(f"{key} must be {_describe(hint)}, got {value!r} ({type(value).__name__}).")
    if origin is Literal:
        if value not in typing.get_args(hint):
            # PyYAML reads YAML 1.1, where an unquoted no, yes, off or on is a bool: `mixed_precision: no` is False.
            why = " (YAML reads an unquoted no/yes/off/on as a bool: write it in quotes, e.g. 'no')"
            why = why if isinstance(value, bool) else ""
            raise ValueError(f"{key} must be one of {list(typing.get_args(hint))}, got {value!r}{why}.")
        return value
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{key} must be null, got {value!r}.")
        return None
    if hint in (int, float) and not isinstance(value, bool):
        value = _number(value, hint, key)
    # bool is a subclass of int: `max_steps: true` must not read as 1.
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ValueError(f"{key} must be {hint.__name__}, got {value!r} ({type(value).__name__}).")
    return value


def _number(value, hint, key: str):
    """A number read as `hint` in any common notation, or `value` unchanged when it is none. PyYAML reads YAML 1.1,
    where `5e-4` (no dot) is a string and `.nan`, `.inf` are floats: the first is a number here, the others are
    refused, since a NaN budget never ends and a NaN rate trains nothing."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip().replace("_", ""))
        except ValueError:
            return value
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{key} must be a finite number, got {value!r}.")
    if hint is float and isinstance(number, int | float):
        return float(number)
    if hint is int and isinstance(value, str) and isinstance(number, float) and number.is_integer():
        return int(number)
    return value


def _describe(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return "null" if hint is type(None) else hint.__name__


_POSITIVE = {
    "data.vocab_size",
    "data.max_length",
    "data.max_words",
    "data.max_ratio",
    "train.max_tokens",
    "train.update_tokens",
    "train.warmup_steps",
    "train.lr_scale",
    "train.max_steps",
    "train.max_epochs",
    "train.max_minutes",
    "train.clip_norm",
    "train.log_every",
    "checkpoint.every_minutes",
    "checkpoint.every_steps",
    "checkpoint.keep",
    "checkpoint.average_last",
    "eval.every_steps",
    "eval.num_beams",
    "eval.max_tokens",
}


def _validate(config, prefix: str) -> None:
    for f in dataclasses.fields(config):
        key = f"{prefix}{f.name}"
        value = getattr(config, f.name)
        if key in _POSITIVE and value is not None and value <= 0:
            raise ValueError(f"{key} must be positive, got {value!r}.")
    if isinstance(config, TrainArgs):
        if config.max_steps is None and config.max_epochs is None and config.max_minutes is None:
            raise ValueError("Set at least one of train.max_steps, train.max_epochs, train.max_minutes.")
        if not 0.0 <= config.label_smoothing < 1.0:
            raise ValueError(
                f"train.label_smoothing must be in [0, 1) (the paper's is 0.1), got {config.label_smoothing}."
            )
    if isinstance(config, DataArgs):
        if config.bleu_sentences < 0:
            raise ValueError(f"data.bleu_sentences must be >= 0, got {config.bleu_sentences}.")
        if config.src_lang == config.tgt_lang:
            raise ValueError(f"data.src_lang and data.tgt_lang are both {config.src_lang!r}.")
