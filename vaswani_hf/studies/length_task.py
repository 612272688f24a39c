"""A controlled length task, generated in code: each model reads a random string of symbols and must write it back
reversed (or copied), trained on strings of up to `max_train_length` symbols and tested on every length up to
`max_test_length`, longer ones included.

Why this task: on a real corpus, long sentences are also rarer, harder and noisier, so a model's loss on them mixes the
architecture's limits with the data's. Here every length is equally easy for a model that can see the whole source:
each output symbol is one source symbol, known exactly, and the symbols are independent, so nothing can be guessed from
context. What grows with the length is only how much the decoder must recall of the source. An encoder-decoder without
attention must carry all of it in one fixed-size vector, the encoder's final state (Sutskever et al., 2014), and its
accuracy should fall as the strings outgrow that vector; with attention the decoder reads every source state again at
each step, and accuracy should hold on (Bahdanau et al., 2015, Fig. 2: RNNenc against RNNsearch by sentence length).
Lengths beyond the training ones test something else on top: whether what was learnt extends to longer inputs, where
the Transformer's positions (sinusoidal or learned) meet values never trained on. Reversal puts the first symbol to
write right after the last one read, so the early outputs depend on recent inputs, which is why Sutskever et al. (§3.3)
reversed their sources; copying makes every symbol wait about as many steps between being read and being written as
the string is long.

- `make_task`: the training and test strings (token ids, no tokenizer), deterministic given the seed.
- `task_config`: a model config of the main comparison (`VaswaniConfig`, `RNNConfig`) resized to the task's vocabulary.
- `train_on_task`: a plain training loop, for a time budget or a number of updates.
- `evaluate_on_task`: greedy decoding of every test string, sequence and token accuracy by length.
- `run_length_task`: all of it for several models; `plot_length_task` draws the result.

Shape legend: B batch, L length (tokens), V vocabulary.
"""

from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedConfig

from ..analysis.plotting import new_figure, plot_points, save_png
from ..data.batching import collate, pad_ids
from ..training.loss import training_loss
from ..training.optim import constant_lambda, paper_adam

# The special tokens of the package's shared BPE and of both model configs' defaults, so that the task's models decode
# as the translation models do: decoding starts from <s>.
PAD, BOS, EOS = 0, 1, 2
FIRST_SYMBOL = 3
TASKS = ("reverse", "copy")
# Greedy decoding may run this many tokens past the target's length: enough to see a model that does not stop (a
# missing </s> counts as wrong), few enough to keep decoding cheap. The Transformer needs positions for them too.
EXTRA_OUTPUT_TOKENS = 5
# Updates whose loss `final_loss` averages.
FINAL_LOSS_UPDATES = 20
# Seconds of update time between progress lines of `train_on_task`.
LOG_SECONDS = 30.0


@dataclass
class LengthTaskSettings:
    """What `run_length_task` generates, trains and tests. The defaults train each model for 3 minutes."""

    # Output the source symbols reversed or copied.
    task: Literal["reverse", "copy"] = "reverse"
    # Ordinary symbols (token ids FIRST_SYMBOL and up).
    symbols: int = 32
    min_length: int = 1
    # Training sources are min_length..max_train_length symbols long, uniformly.
    max_train_length: int = 20
    # The test covers every length min_length..max_test_length, so lengths never seen in training are included.
    max_test_length: int = 40
    # Generated once, with `seed`.
    train_examples: int = 50_000
    test_per_length: int = 50
    # Sequences per update.
    batch_size: int = 64
    # Adam (beta1 0.9, beta2 0.98, eps 1e-9, the package's `paper_adam`) at this rate after a linear warm-up.
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    # Training time per model in minutes of update time, or a number of updates (machine-independent: what the tests
    # use); with both, whichever comes first.
    minutes: float | None = 2.0
    max_updates: int | None = None
    seed: int = 0

    def __post_init__(self):
        check_settings(self)


def check_settings(settings: LengthTaskSettings) -> None:
    """Raises ValueError, naming the field, for settings that cannot make a task or a training run."""

    def positive_int(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    if settings.task not in TASKS:
        raise ValueError(f"LengthTaskSettings.task must be one of {TASKS}, got {settings.task!r}.")
    for name in ("symbols", "min_length", "max_train_length", "max_test_length", "train_examples"):
        if not positive_int(getattr(settings, name)):
            raise ValueError(f"LengthTaskSettings.{name} must be a positive integer, got {getattr(settings, name)!r}.")
    for name in ("test_per_length", "batch_size", "warmup_steps"):
        if not positive_int(getattr(settings, name)):
            raise ValueError(f"LengthTaskSettings.{name} must be a positive integer, got {getattr(settings, name)!r}.")
    if settings.max_train_length < settings.min_length:
        raise ValueError(
            f"LengthTaskSettings.max_train_length ({settings.max_train_length}) must be at least min_length "
            f"({settings.min_length})."
        )
    if settings.max_test_length < settings.max_train_length:
        raise ValueError(
            f"LengthTaskSettings.max_test_length ({settings.max_test_length}) must be at least max_train_length "
            f"({settings.max_train_length}): the test covers every training length, and longer ones."
        )
    if not settings.learning_rate > 0:
        raise ValueError(f"LengthTaskSettings.learning_rate must be positive, got {settings.learning_rate!r}.")
    if settings.minutes is None and settings.max_updates is None:
        raise ValueError(
            "LengthTaskSettings needs minutes (update time per model) or max_updates (updates per model) to say how "
            "long to train; both are None."
        )
    if settings.minutes is not None and not settings.minutes > 0:
        raise ValueError(f"LengthTaskSettings.minutes must be positive or None, got {settings.minutes!r}.")
    if settings.max_updates is not None and not positive_int(settings.max_updates):
        raise ValueError(
            f"LengthTaskSettings.max_updates must be a positive integer or None, got {settings.max_updates!r}."
        )


@dataclass
class LengthTask:
    """The strings of one task, as token ids: each source and target ends in EOS. The test strings are grouped by
    length, the number of symbols before EOS."""

    settings: LengthTaskSettings
    train_sources: list[list[int]]
    train_targets: list[list[int]]
    test_sources: dict[int, list[list[int]]]
    test_targets: dict[int, list[list[int]]]

    @property
    def vocab_size(self) -> int:
        return FIRST_SYMBOL + self.settings.symbols


def _target(source: Sequence[int], task: str) -> list[int]:
    """The target of `source` (symbols only, no EOS), with EOS."""
    return [*(reversed(source) if task == "reverse" else source), EOS]


def make_task(settings: LengthTaskSettings) -> LengthTask:
    """The training strings (lengths uniform in min_length..max_train_length, symbols uniform and independent) and
    `test_per_length` test strings of every length min_length..max_test_length, all from `settings.seed`.

    Training and test strings come from two independent streams of the seed, so neither changes when the other's
    settings do. They are not checked against each other: a short test string can also occur in training (with 32
    symbols there are only 32 strings of length 1), which only makes the short lengths easier, where every model does
    well anyway; from a few symbols on, a repeat is vanishingly rare (32^5 strings of length 5).
    """
    check_settings(settings)
    train_stream, test_stream = (np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2))
    low, high = FIRST_SYMBOL, FIRST_SYMBOL + settings.symbols  # symbols are ids low..high-1
    n = settings.train_examples
    lengths = train_stream.integers(settings.min_length, settings.max_train_length + 1, size=n)  # (n,)
    # One row of symbols per example, cut to its length: one draw instead of n.
    table = train_stream.integers(low, high, size=(n, settings.max_train_length))  # (n, max_train_length)
    symbols = [table[i, : lengths[i]].tolist() for i in range(n)]
    test_sources, test_targets = {}, {}
    for length in range(settings.min_length, settings.max_test_length + 1):
        rows = test_stream.integers(
            low, high, size=(settings.test_per_length, length)
        ).tolist()  # (test_per_length, L)
        test_sources[length] = [[*row, EOS] for row in rows]
        test_targets[length] = [_target(row, settings.task) for row in rows]
    return LengthTask(
        settings=settings,
        train_sources=[[*row, EOS] for row in symbols],
        train_targets=[_target(row, settings.task) for row in symbols],
        test_sources=test_sources,
        test_targets=test_targets,
    )


def task_config(config: PreTrainedConfig, settings: LengthTaskSettings) -> PreTrainedConfig:
    """A copy of `config` (a `VaswaniConfig` or `RNNConfig`, as AutoConfig or the run configs give them) for the task:
    its vocabulary (3 special tokens and `settings.symbols` symbols) and special-token ids, and, where the model has
    positions, at least enough of them for the longest test source and output. Widths, layers, attention, dropout and
    everything else stay as they are, so that the task trains the architectures of the main comparison. `config` is
    not changed.

    The copy goes through the class's constructor, so that its checks run on the new values."""
    values = config.to_dict()
    values.update(
        vocab_size=FIRST_SYMBOL + settings.symbols,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
    )
    if "max_position_embeddings" in values:
        # The decoder reads <s> and all but the last of up to max_test_length + EXTRA_OUTPUT_TOKENS output tokens; the
        # encoder reads max_test_length symbols and EOS. A few more for safety.
        needed = settings.max_test_length + EXTRA_OUTPUT_TOKENS + 3
        values["max_position_embeddings"] = max(values["max_position_embeddings"], needed)
    return type(config).from_dict(copy.deepcopy(values))


def greedy_decoding(length: int) -> dict:
    """The `generate()` settings for test strings of `length` symbols: greedy search, at most `EXTRA_OUTPUT_TOKENS`
    past the target (symbols and EOS), whatever the model's generation config says. The package's models start from
    the paper's beam search with a length penalty, and their source-relative output limit applies only where the call
    sets no `max_new_tokens`; the settings transformers would otherwise take from the generation config and that could
    bend a greedy output's length (a minimum length, n-gram blocking, a repetition penalty) are set to do nothing."""
    return dict(
        num_beams=1,
        do_sample=False,
        max_new_tokens=length + EXTRA_OUTPUT_TOKENS,
        min_length=0,
        min_new_tokens=None,
        no_repeat_ngram_size=0,
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        bad_words_ids=None,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Indices of `batch_size` examples at a time, epoch after epoch, each epoch in a new random order; an epoch's
    last batch may be smaller, so that every example is seen once per epoch."""
    while True:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def train_on_task(
    model, task: LengthTask, settings: LengthTaskSettings, *, clip_norm: float | None, log: Callable | None = None
) -> dict:
    """Trains `model` on the task's training strings, on the model's device: batches of `settings.batch_size` strings
    in random order, plain cross-entropy (no label smoothing: there is exactly one right output), the paper's Adam at
    `settings.learning_rate` after `settings.warmup_steps` updates of linear warm-up, gradient norms clipped to
    `clip_norm` unless it is None. Dropout is the model config's (`model.train()`).

    Stops after `settings.minutes` of update time (forward, backward and step, the loss read back, which waits for a
    GPU) or `settings.max_updates` updates, whichever is set and comes first. `log` (a callable taking one str) gets a
    progress line every `LOG_SECONDS` seconds of update time.

    Returns the number of `updates`, their `minutes`, the `examples_seen` and the `final_loss` (the mean cross-entropy
    per target token over the last `FINAL_LOSS_UPDATES` updates).

    Raises:
        ValueError: for invalid settings (neither minutes nor max_updates, ...) or a clip_norm that is not positive.
    """
    check_settings(settings)
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}.")
    seconds_allowed = settings.minutes * 60 if settings.minutes is not None else math.inf
    updates_allowed = settings.max_updates if settings.max_updates is not None else math.inf
    # A third stream of the seed, apart from the strings': the order of the batches.
    rng = np.random.default_rng(np.random.SeedSequence(settings.seed).spawn(3)[2])
    optimizer = paper_adam(model.parameters(), settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, constant_lambda(settings.warmup_steps))
    device = model.device
    losses: deque[float] = deque(maxlen=FINAL_LOSS_UPDATES)
    updates = examples = 0
    seconds = next_log = 0.0
    model.train()
    batches = _batches(len(task.train_sources), settings.batch_size, rng)
    while updates < updates_allowed and seconds < seconds_allowed:
        indices = next(batches)
        started = time.perf_counter()
        batch = collate(
            {
                "input_ids": [task.train_sources[i] for i in indices],
                "labels": [task.train_targets[i] for i in indices],
            },
            PAD,
        )  # input_ids, attention_mask (B, L source); labels (B, L target), -100 on padding
        batch = {key: value.to(device) for key, value in batch.items()}
        loss = training_loss(model, batch, label_smoothing=0.0)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # a GPU finishes the update here, inside the timed span
        seconds += time.perf_counter() - started
        updates += 1
        examples += len(indices)
        if log is not None and seconds >= next_log:
            log(f"update {updates}, {seconds / 60:.2f} min, loss {losses[-1]:.4f}")
            next_log = seconds + LOG_SECONDS
    final_loss = sum(losses) / len(losses)
    if log is not None:
        log(f"trained: {updates} updates, {seconds / 60:.2f} min, {examples} examples, final loss {final_loss:.4f}")
    return {"updates": updates, "minutes": seconds / 60, "examples_seen": examples, "final_loss": final_loss}


def _score(output: Sequence[int], target: Sequence[int]) -> tuple[bool, float]:
    """Whether `output` (the symbols before the first EOS) is `target` (symbols, EOS left off), and its token accuracy
    (see `evaluate_on_task`)."""
    matches = sum(o == t for o, t in zip(output, target, strict=False))
    return list(output) == list(target), matches / max(len(output), len(target))


def evaluate_on_task(model, task: LengthTask, *, batch_size: int = 100) -> list[dict]:
    """Greedy decoding (`greedy_decoding`) of every test string, in eval mode on the model's device; the model is put
    back in training mode afterwards if it was in it. The output is what the model writes before its first EOS; one
    that writes no EOS keeps all its `length + EXTRA_OUTPUT_TOKENS` tokens.

    One entry per test length, in increasing order: `length`, `sequences` (how many strings),
    `sequence_accuracy` (the share of strings whose output is exactly the target, so of the right length),
    `token_accuracy` and `seen_in_training` (length <= max_train_length).

    Token accuracy of one string, its target's symbols y_1..y_n (EOS not counted) against the output's o_1..o_m:
    #{i <= min(n, m): o_i = y_i} / max(n, m). Positions are compared as they stand, without alignment: a missing
    symbol counts as wrong, and so does every extra one, through the denominator; a symbol dropped early shifts the
    rest, which then count as wrong too. The entry's value is the mean over its strings.

    Raises:
        ValueError: if batch_size is not a positive integer.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    was_training = model.training
    model.eval()
    results = []
    try:
        for length in sorted(task.test_sources):
            sources, targets = task.test_sources[length], task.test_targets[length]
            exact, token_scores = 0, []
            for start in range(0, len(sources), batch_size):
                inputs = pad_ids(sources[start : start + batch_size], PAD, model.device)  # (B, L + 1), no padding
                with torch.inference_mode():
                    generated = model.generate(**inputs, **greedy_decoding(length))  # (B, 1 + up to L + extra)
                # Column 0 is the decoder start token; a row that ended early is padded after its EOS.
                for row, target in zip(generated[:, 1:].tolist(), targets[start : start + batch_size], strict=True):
                    output = row[: row.index(EOS)] if EOS in row else row
                    is_exact, accuracy = _score(output, target[:-1])
                    exact += is_exact
                    token_scores.append(accuracy)
            results.append(
                {
                    "length": length,
                    "sequences": len(sources),
                    "sequence_accuracy": exact / len(sources),
                    "token_accuracy": sum(token_scores) / len(token_scores),
                    "seen_in_training": length <= task.settings.max_train_length,
                }
            )
    finally:
        model.train(was_training)
    return results


def _mean_over_lengths(by_length: list[dict], seen: bool) -> dict:
    """Sequence and token accuracy averaged over the lengths seen in training (or over the others), each length
    weighing the same; None where there are no such lengths."""
    chosen = [entry for entry in by_length if entry["seen_in_training"] == seen]
    return {
        key: sum(entry[key] for entry in chosen) / len(chosen) if chosen else None
        for key in ("sequence_accuracy", "token_accuracy")
    }


def run_length_task(
    configs: dict[str, tuple[PreTrainedConfig, float | None]],
    settings: LengthTaskSettings,
    log: Callable = print,
    *,
    device: str | torch.device = "cpu",
) -> dict:
    """Trains and tests one model per entry of `configs`, name -> (architecture config, clip_norm): the model
    `AutoModelForSeq2SeqLM.from_config(task_config(config, settings))`, initialised after `torch.manual_seed(seed)`,
    on `device`, trained by `train_on_task` and tested by `evaluate_on_task` on the same task (`make_task`).

    Returns a JSON-serialisable report: `settings` (as a dict) and `models`, name -> `parameters`, `train` (what
    `train_on_task` returns), `by_length` (what `evaluate_on_task` returns), and `seen` and `unseen`, the sequence and
    token accuracy averaged over the test lengths up to max_train_length and over the longer ones (None where
    max_test_length == max_train_length leaves none).
    """
    check_settings(settings)
    task = make_task(settings)
    report = {"settings": asdict(settings), "models": {}}
    for name, (config, clip_norm) in configs.items():
        torch.manual_seed(settings.seed)
        model = AutoModelForSeq2SeqLM.from_config(task_config(config, settings)).to(device)
        parameters = sum(p.numel() for p in model.parameters())
        log(f"{name}: {parameters:,} parameters, training on the {settings.task} task")
        train = train_on_task(
            model, task, settings, clip_norm=clip_norm, log=lambda line, name=name: log(f"{name}: {line}")
        )
        by_length = evaluate_on_task(model, task)
        seen, unseen = _mean_over_lengths(by_length, True), _mean_over_lengths(by_length, False)
        report["models"][name] = {
            "parameters": parameters,
            "train": train,
            "by_length": by_length,
            "seen": seen,
            "unseen": unseen,
        }
        log(
            f"{name}: sequence accuracy {seen['sequence_accuracy']:.3f} on seen lengths"
            + (
                f", {unseen['sequence_accuracy']:.3f} on longer ones"
                if unseen["sequence_accuracy"] is not None
                else ""
            )
        )
    return report


def plot_length_task(report: dict, path: str | Path, *, labels: dict[str, str] | None = None) -> Path:
    """Draws sequence accuracy (left) and token accuracy (right) against the test length for every model of `report`
    (what `run_length_task` returns), with a vertical line at the longest training length; `labels` names the models
    in the legend (by default their keys). Writes a PNG to `path` and returns it.

    Raises:
        ImportError: without matplotlib (the optional "plots" extra).
    """
    labels = labels or {}
    longest = report["settings"]["max_train_length"]
    figure = new_figure(figsize=(11, 4.2), layout="constrained")
    axes = figure.subplots(1, 2, sharex=True)
    for axis, key, title in (
        (axes[0], "sequence_accuracy", "Sequence accuracy (exact output)"),
        (axes[1], "token_accuracy", "Token accuracy (position by position)"),
    ):
        for name, model in report["models"].items():
            plot_points(axis, model["by_length"], "length", key, "o-", markersize=3, label=labels.get(name, name))
        axis.axvline(longest, color="grey", linestyle="--", linewidth=1, label="longest training length")
        axis.set_xlabel("source length (symbols)")
        axis.set_ylabel(key.replace("_", " "))
        axis.set_ylim(-0.03, 1.03)
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize="small")
    figure.suptitle(f"{report['settings']['task'].capitalize()} task: accuracy by source length")
    return save_png(figure, path, dpi=120)
