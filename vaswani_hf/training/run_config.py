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


def setting(
    default=dataclasses.MISSING,
    *,
    help: str,
    resume: bool = False,
    valid: str | None = None,
    paper: str | None = None,
    aside: str | None = None,
    compared: Literal["preset", "model", "corpus"] = "preset",
    architectures: tuple[str, ...] = ("vaswani", "marian"),
):
    """A run-config field and everything known about it, in one place; the validation, the resume check,
    `vaswani-train --help`, the architectures' field lists and the model card all read it from here.

    Args:
        help: what the setting does, for `--help`.
        resume: whether a resumed run may change it (how long, how often, where; never what is trained).
        valid: the range a number must lie in: "> 0", ">= 0" or "[0, 1)"; None is also accepted where the type allows.
        paper: where the paper fixes it, for the model card's comparison with the paper.
        aside: why the model card lists a difference from the preset apart from the paper's settings (the paper says
            nothing about it, or it does not change the trained weights).
        compared: what the model card compares it with: the paper's preset (`preset`), the saved model config
            against Table 3 (`model`), or the paper's data (`corpus`).
        architectures: the `model.architecture`s that read it (model section only).
    """
    metadata = dict(
        help=help, resume=resume, valid=valid, paper=paper, aside=aside, compared=compared, architectures=architectures
    )
    return field(default=default, metadata=metadata)


ALL = ("vaswani", "marian", "rnn")
RNN = ("rnn",)


@dataclass
class ModelArgs:
    """The architecture: a `VaswaniConfig` preset (Table 3 row) and any fields that depart from it.

    `architecture` picks the transformers model the recipe trains: this package's `vaswani`; transformers' own
    `marian` (`MarianMTModel`, post-norm with fixed sinusoidal positions, given the same sizes); or this package's
    recurrent encoder-decoder `rnn` (`RNNConfig`: its defaults, then the fields set here that it reads). The recipe
    itself (batching, Eq. 3, loss, checkpoints, averaging, validation) is the same for all;
    `vaswani_hf.training.architectures` builds the model config and refuses a field the architecture lacks. The model
    card compares these through the saved model config, against Table 3.
    """

    architecture: Literal["vaswani", "marian", "rnn"] = setting(
        "vaswani", help="the network: this package's Transformer, transformers' MarianMTModel or the recurrent model",
        compared="model", architectures=ALL,
    )  # fmt: skip
    preset: Literal["base", "big"] = setting(
        "base", help="the Table 3 row the sizes start from", compared="model", architectures=ALL
    )
    d_model: int | None = setting(None, help="model width", paper="model width (§3, Table 3)", compared="model")
    d_ff: int | None = setting(
        None, help="feed-forward inner width", paper="feed-forward inner width (Eq. 2, Table 3)", compared="model"
    )
    num_heads: int | None = setting(
        None, help="attention heads", paper="attention heads (§3.2.2, Table 3)", compared="model"
    )
    encoder_layers: int | None = setting(
        None, help="encoder layers", paper="encoder layers N (§3.1)", compared="model", architectures=ALL
    )
    decoder_layers: int | None = setting(
        None, help="decoder layers", paper="decoder layers N (§3.1)", compared="model", architectures=ALL
    )
    dropout: float | None = setting(
        None, help="dropout on sub-layer outputs and embeddings",
        paper="P_drop on sub-layer outputs and embeddings (§5.4)", compared="model", architectures=ALL,
    )  # fmt: skip
    attention_dropout: float | None = setting(
        None, help="dropout on attention weights", paper="dropout on attention weights (none in the paper)",
        compared="model",
    )  # fmt: skip
    norm_first: bool | None = setting(
        None, help="pre-norm (true) or the paper's post-norm (false)",
        paper="pre-norm instead of the paper's post-norm LayerNorm(x + Sublayer(x)) (§3.1)", compared="model",
    )  # fmt: skip
    position_embedding_type: Literal["sinusoidal", "learned"] | None = setting(
        None, help="sinusoidal or learned positions", paper="positional encodings (§3.5)", compared="model"
    )
    tie_word_embeddings: bool | None = setting(
        None, help="one matrix for both embeddings and the output projection",
        paper="one matrix for both embeddings and the output projection (§3.4)", compared="model", architectures=ALL,
    )  # fmt: skip
    max_position_embeddings: int | None = setting(None, help="longest accepted sequence", compared="model")
    cell: Literal["gru", "lstm"] | None = setting(None, help="the recurrent cell", compared="model", architectures=RNN)
    bidirectional: bool | None = setting(None, help="a bidirectional encoder", compared="model", architectures=RNN)
    attention: Literal["none", "additive", "dot", "general"] | None = setting(
        None, help="the decoder's attention over the encoder states", compared="model", architectures=RNN
    )
    hidden_size: int | None = setting(None, help="recurrent state size", compared="model", architectures=RNN)
    embedding_size: int | None = setting(None, help="embedding size", compared="model", architectures=RNN)
    # Same results, different speed: None lets transformers choose (sdpa where available).
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = setting(
        None, help="the attention kernel (eager, sdpa, flash_attention_2; default: transformers' choice)",
        resume=True, aside="attention kernel, same results",
    )  # fmt: skip

    def overrides(self) -> dict:
        """The architecture fields set here (every field but `architecture`, `preset` and the kernel)."""
        skip = ("architecture", "preset", "attn_implementation")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip and v is not None}


@dataclass
class DataArgs:
    """The corpus, its cleaning and the tokenizer."""

    corpus: str = setting(
        "default",
        help="`default` (the built-in English-German corpus) or what load_parallel reads: a prefix of aligned text "
        "files, a .tsv, a .jsonl, a saved dataset, hub:NAME",
        compared="corpus",
    )
    validation: str | None = setting(
        None, help="a validation corpus (default: the corpus's own split)", resume=True,
        aside="validation data, not trained on",
    )  # fmt: skip
    src_lang: str = setting("en", help="source language key", compared="corpus")
    tgt_lang: str = setting("de", help="target language key", compared="corpus")
    tokenizer: str | None = setting(
        None, help="a saved tokenizer to reuse (default: train a shared BPE on the training split, §5.1)",
        paper="a given tokenizer instead of a BPE trained on the training data (§5.1)",
    )  # fmt: skip
    vocab_size: int = setting(
        37000, help="BPE vocabulary size", valid="> 0", paper="shared source-target BPE vocabulary (§3.4, §5.1)",
        compared="model",
    )  # fmt: skip
    max_length: int = setting(
        256, help="pairs longer than this many tokens on either side are dropped after tokenization", valid="> 0",
        aside="longest training pair in tokens",
    )  # fmt: skip
    clean: bool = setting(True, help="drop empty, overlong and misaligned pairs", aside="corpus cleaning")
    max_words: int = setting(250, help="cleaning: most words on either side", valid="> 0", aside="corpus cleaning")
    max_ratio: float = setting(3.0, help="cleaning: largest length ratio", valid="> 0", aside="corpus cleaning")
    # Beam search is slow; the validation loss uses the whole split.
    bleu_sentences: int = setting(
        500, help="validation sentences translated for BLEU during training", resume=True, valid=">= 0",
        aside="validation BLEU during training",
    )  # fmt: skip


@dataclass
class TrainArgs:
    """Batching, optimiser and schedule (§5.1-§5.3)."""

    # fairseq counts a batch's tokens the same way: the longer of its padded source and target sides.
    max_tokens: int = setting(
        4096, help="padded tokens per micro-batch and process", valid="> 0",
        aside="micro-batch size; updates keep their token budget",
    )  # fmt: skip
    update_tokens: int = setting(
        25000, help="target tokens per update, over micro-batches and processes", valid="> 0",
        paper="target tokens per update (§5.1: about 25000)",
    )  # fmt: skip
    warmup_steps: int = setting(
        4000, help="warm-up updates of Eq. 3", valid="> 0", paper="warm-up updates of Eq. 3 (§5.3)"
    )
    lr_scale: float = setting(
        1.0, help="factor on the learning rate of Eq. 3 (1.0 is the paper)", valid="> 0",
        paper="factor on the learning rate of Eq. 3 (§5.3)",
    )  # fmt: skip
    # Recurrent encoder-decoders were trained with Adam or SGD at a fixed rate (Bahdanau et al.: Adadelta; Luong et
    # al.: SGD at 1.0, halved late); `constant` gives them a recipe of their own beside Eq. 3.
    schedule: Literal["noam", "constant"] = setting(
        "noam", help="learning-rate schedule: noam (Eq. 3) or constant (train.learning_rate after a linear warm-up of "
        "train.warmup_steps updates)",
        paper="learning-rate schedule (§5.3: Eq. 3)",
    )  # fmt: skip
    learning_rate: float = setting(
        1e-3, help="Adam's learning rate with train.schedule=constant (unused by Eq. 3)", valid="> 0",
        paper="learning rate of the constant schedule (the paper uses Eq. 3)",
    )  # fmt: skip
    # Validation reports it beside the plain cross-entropy and perplexity.
    label_smoothing: float = setting(
        0.1, help="eps_ls of the training loss (the paper's is 0.1)", valid="[0, 1)",
        paper="label smoothing eps_ls of the training loss (§5.4)",
    )  # fmt: skip
    weight_decay: float = setting(
        0.0, help="decoupled weight decay", valid=">= 0", paper="weight decay (none in the paper's Adam, §5.3)"
    )
    clip_norm: float | None = setting(
        None, help="gradient-norm clipping (the paper has none)", valid="> 0",
        paper="gradient-norm clipping (none in the paper)",
    )  # fmt: skip
    max_steps: int | None = setting(
        100000, help="stop after this many updates", resume=True, valid="> 0",
        paper="training updates (§5.2: 100k base, 300k big)",
    )  # fmt: skip
    max_epochs: int | None = setting(
        None, help="stop after this many epochs", resume=True, valid="> 0",
        paper="training epochs (the paper counts updates)",
    )  # fmt: skip
    # Validation and checkpointing time is not counted.
    max_minutes: float | None = setting(
        None, help="stop after this many minutes of training", resume=True, valid="> 0",
        paper="training time limit in minutes (the paper counts updates)",
    )  # fmt: skip
    mixed_precision: Literal["no", "bf16", "fp16", "auto"] = setting(
        "no", help="autocast precision; auto: bf16 on a GPU that has it, on a CPU where a probe at start finds it at least "
        "1.2x faster than fp32 (precision.json records it), else fp32",
        paper="autocast precision (the paper trains in fp32)",
    )  # fmt: skip
    seed: int = setting(1, help="random seed of the model, data order and dropout", aside="random seed")
    log_every: int = setting(50, help="updates between log lines", resume=True, valid="> 0", aside="logging")


@dataclass
class CheckpointArgs:
    """When to checkpoint, how many to keep and average (§6.1: every 10 minutes, average the last 5 or 20)."""

    every_minutes: float | None = setting(
        10.0, help="minutes of training between checkpoints", resume=True, valid="> 0",
        paper="minutes between checkpoints (§6.1: 10)",
    )  # fmt: skip
    every_steps: int | None = setting(
        None, help="updates between checkpoints", resume=True, valid="> 0",
        paper="updates between checkpoints (§6.1 checkpoints by time)",
    )  # fmt: skip
    keep: int = setting(
        20, help="checkpoints kept on disk", resume=True, valid="> 0", aside="checkpoints kept on disk"
    )
    average_last: int = setting(
        5, help="checkpoints averaged into the final model", resume=True, valid="> 0",
        paper="checkpoints averaged (§6.1: 5 base, 20 big)",
    )  # fmt: skip


@dataclass
class EvalArgs:
    """Validation during training and the final evaluation."""

    every_steps: int | None = setting(
        1000, help="updates between validations", resume=True, valid="> 0", aside="validation during training"
    )
    # The final evaluation uses the paper's decoding from the generation config.
    num_beams: int = setting(
        4, help="beam size of validation BLEU", resume=True, valid="> 0", aside="validation during training"
    )
    max_tokens: int = setting(
        8192, help="padded tokens per validation batch", resume=True, valid="> 0", aside="validation during training"
    )


@dataclass
class RunConfig:
    """Everything `vaswani-train` needs; load with `RunConfig.load(...)`."""

    output_dir: str = setting(
        "outputs/run", help="the run folder (checkpoints, model, logs)", resume=True, aside="where the run was written"
    )
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
        resumed run may not change (`setting(resume=False)`): `{key: (saved value, this value)}`."""
        ours, theirs = self.to_flat_dict(), saved.to_flat_dict()
        return {
            key: (theirs.get(key), value)
            for key, value in ours.items()
            if key not in RESUMABLE and theirs.get(key) != value
        }


@dataclass(frozen=True)
class Setting:
    """One run-config key (`section.key`, as in overrides) with its type, default and `setting(...)` metadata."""

    key: str
    type: object
    default: object
    help: str
    resume: bool
    valid: str | None
    paper: str | None
    aside: str | None
    compared: str
    architectures: tuple[str, ...]


def _settings(cls, prefix: str = "") -> dict[str, Setting]:
    found = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            found.update(_settings(hints[f.name], f"{f.name}."))
        else:
            found[prefix + f.name] = Setting(prefix + f.name, hints[f.name], f.default, **f.metadata)
    return found


# Every setting, in the order of the dataclasses: the one table the rest is derived from.
SETTINGS: dict[str, Setting] = _settings(RunConfig)

# What a resumed run may change: how long it trains, how it logs, checkpoints and validates, and the attention kernel
# (the same results). Every other setting shapes the data plan (corpus, cleaning, tokenizer, batch sizes, seed), the
# schedule, the loss or the model, which the position saved in a checkpoint assumes.
RESUMABLE = frozenset(key for key, s in SETTINGS.items() if s.resume)


def describe_settings() -> str:
    """Every key with its default and help, by section, for `vaswani-train --help`."""
    lines, section = [], None
    for key, s in SETTINGS.items():
        head = key.partition(".")[0] if "." in key else None
        if head != section and head is not None:
            lines.append(f"  {head}:")
            section = head
        default = "null" if s.default is None else s.default
        notes = [s.help]
        if s.valid:
            notes.append(f"valid: {s.valid}")
        if s.resume:
            notes.append("may change on --resume")
        if key.startswith("model.") and s.architectures != ALL:
            notes.append("architecture " + "/".join(s.architectures))
        indent = "    " if head else "  "
        lines.append(f"{indent}{key}={default}  {'; '.join(notes)}")
    return "\n".join(lines)


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


# The ranges a `setting(valid=...)` may name: the words of the error message, and the test.
RANGES = {
    "> 0": ("positive", lambda value: value > 0),
    ">= 0": (">= 0", lambda value: value >= 0),
    "[0, 1)": ("in [0, 1)", lambda value: 0 <= value < 1),
}


def _validate(config, prefix: str) -> None:
    for f in dataclasses.fields(config):
        valid, value = f.metadata.get("valid"), getattr(config, f.name)
        if valid is not None and value is not None:
            words, test = RANGES[valid]
            if not test(value):
                raise ValueError(f"{prefix}{f.name} must be {words}, got {value!r}: {f.metadata['help']}.")
    if isinstance(config, TrainArgs):
        if config.max_steps is None and config.max_epochs is None and config.max_minutes is None:
            raise ValueError("Set at least one of train.max_steps, train.max_epochs, train.max_minutes.")
    if isinstance(config, DataArgs):
        if config.src_lang == config.tgt_lang:
            raise ValueError(f"data.src_lang and data.tgt_lang are both {config.src_lang!r}.")
