"""The paper's training recipe (§5): token-budget batching, the Eq. 3 schedule, checkpoints and averaging."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import DistributedType
from safetensors import SafetensorError
from safetensors.torch import load_file


def noam_lambda(d_model: int, warmup_steps: int):
    """Eq. 3 as a function of the update number (1-based): d_model^-0.5 * min(n^-0.5, n * warmup^-1.5).

    The first update uses n = 1, never lr 0: ``LambdaLR`` calls its function with 0 before the first
    step, so the function shifts by one. transformers' ``inverse_sqrt`` schedule starts at 0 instead.
    """
    if d_model <= 0 or warmup_steps <= 0:
        raise ValueError(f"noam_lambda needs d_model > 0 and warmup_steps > 0, got {d_model} and {warmup_steps}.")

    def lr_at(step: int) -> float:
        n = step + 1
        return d_model**-0.5 * min(n**-0.5, n * warmup_steps**-1.5)

    return lr_at


def noam_schedule(
    optimizer: torch.optim.Optimizer, d_model: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Eq. 3 on ``optimizer``; its ``lr`` multiplies the schedule (1.0 is the paper)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, noam_lambda(d_model, warmup_steps))


def paper_adam(params, lr_scale: float = 1.0, weight_decay: float = 0.0) -> torch.optim.Adam:
    """§5.3: Adam with beta1 0.9, beta2 0.98, eps 1e-9; ``lr_scale`` multiplies Eq. 3.

    PyTorch's fused kernel (one pass over each parameter instead of a chain of element-wise ops, each reading and
    writing all of them) where every parameter is a floating-point tensor on a CPU or CUDA device; it computes the
    same update up to float rounding. `python scripts/benchmark.py --modes train --profile` shows its share of a step.
    """
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in tensors) or None
    return torch.optim.Adam(params, lr=lr_scale, betas=(0.9, 0.98), eps=1e-9, weight_decay=weight_decay, fused=fused)


def label_smoothed_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float, num_items_in_batch=None
) -> torch.Tensor:
    """§5.4: cross-entropy with label smoothing epsilon_ls, which spreads epsilon uniformly over the vocabulary
    (Szegedy et al., 2016, whom the paper cites; PyTorch's and transformers' `LabelSmoother` form). Summed over the
    target tokens (labels != -100) and divided by `num_items_in_batch`, the target tokens of the whole update, so that
    accumulated and data-parallel gradients equal those of one large batch; by default this batch's own count.

    `logits` (B, T, V) and `labels` (B, T); `label_smoothing=0` is the model's own loss, plain cross-entropy.
    """
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1).float(),  # (B * T, V)
        labels.flatten().to(logits.device),
        ignore_index=-100,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return loss / (num_items_in_batch if num_items_in_batch is not None else (labels != -100).sum())


def teacher_forced_logits(model, batch: dict) -> torch.Tensor:
    """The logits (B, T, V) for a micro-batch from `collate`, with decoder inputs built from the labels
    (`prepare_decoder_input_ids_from_labels`, as `DataCollatorForSeq2Seq` builds them) and no decoding cache. The
    labels stay out of the call: the model would compute its own loss with them, for nothing."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    prepare = getattr(model, "module", model).prepare_decoder_input_ids_from_labels  # DDP wraps the model
    return model(**inputs, decoder_input_ids=prepare(labels=batch["labels"]), use_cache=False).logits


def training_loss(model, batch: dict, label_smoothing: float, num_items_in_batch=None) -> torch.Tensor:
    """The recipe's loss for one micro-batch from `collate`: `label_smoothed_loss` of `teacher_forced_logits`."""
    return label_smoothed_loss(
        teacher_forced_logits(model, batch), batch["labels"], label_smoothing, num_items_in_batch
    )


# --------------------------------------------------------------------------------------------------------------------
# Data: tokenized pairs and token-budget batches (§5.1)
# --------------------------------------------------------------------------------------------------------------------


def tokenize_pairs(dataset, tokenizer, *, src_lang: str, tgt_lang: str, max_length: int, num_proc: int | None = None):
    """`input_ids` and `labels` (each ending with </s>) for a dataset with a WMT-style `translation` column.

    Pairs with more than `max_length` tokens on either side are dropped rather than truncated: a truncated target
    teaches the model to stop mid-sentence. Returns the tokenized dataset and the number of pairs dropped.
    """

    def encode(batch):
        src = [pair[src_lang] for pair in batch["translation"]]
        tgt = [pair[tgt_lang] for pair in batch["translation"]]
        return {
            "input_ids": tokenizer(src, add_special_tokens=True)["input_ids"],
            "labels": tokenizer(tgt, add_special_tokens=True)["input_ids"],
        }

    encoded = dataset.map(
        encode, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc="Tokenizing"
    )
    kept = encoded.filter(
        lambda batch: [
            max(len(s), len(t)) <= max_length for s, t in zip(batch["input_ids"], batch["labels"], strict=True)
        ],
        batched=True,
        num_proc=num_proc,
        desc=f"Dropping pairs over {max_length} tokens",
    )
    return kept, len(encoded) - len(kept)


def token_batches(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], max_tokens: int, *, rng: np.random.Generator
) -> list[list[int]]:
    """Length-bucketed batches whose padded size, batch size x the longest side, stays within `max_tokens`.

    Pairs are sorted by target then source length (ties broken at random), so a batch holds pairs of nearly the same
    lengths and padding is small; the batches come back in a random order. The padded size counts the longer of the
    two sides, as fairseq does, because both the encoder and the decoder run on the batch.
    """
    src = np.asarray(src_lengths)
    tgt = np.asarray(tgt_lengths)
    longest = np.maximum(src, tgt)
    if len(longest) and longest.max() > max_tokens:
        raise ValueError(
            f"A pair has {longest.max()} tokens but train.max_tokens is {max_tokens}: raise train.max_tokens or lower "
            "data.max_length."
        )
    order = rng.permutation(len(src))
    order = order[np.lexsort((src[order], tgt[order]))]
    batches, current, width = [], [], 0
    for index in order.tolist():
        new_width = max(width, int(longest[index]))
        if current and new_width * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, new_width = [], int(longest[index])
        current.append(index)
        width = new_width
    if current:
        batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True)
class Update:
    """The micro-batches of one optimizer update; process `rank` of `n` runs `micro_batches[rank::n]`."""

    micro_batches: tuple[tuple[int, ...], ...]
    target_tokens: int

    def for_process(self, rank: int, num_processes: int) -> tuple[tuple[int, ...], ...]:
        return self.micro_batches[rank::num_processes]


def plan_epoch(
    src_lengths: Sequence[int],
    tgt_lengths: Sequence[int],
    *,
    max_tokens: int,
    update_tokens: int,
    num_processes: int = 1,
    seed: int = 0,
    epoch: int = 0,
) -> list[Update]:
    """One epoch as a list of updates of about `update_tokens` target tokens each (§5.1: ~25000).

    Every process computes the same plan from (seed, epoch), so the plan doubles as the data position of a
    checkpoint, and each update knows its global number of target tokens before it runs: the loss of every
    micro-batch is divided by it, which makes the update the same whether its micro-batches run one after another on
    one process or side by side on several. An update holds a multiple of `num_processes` micro-batches so that every
    process takes part in every update; up to `num_processes - 1` leftover batches are skipped each epoch.
    """
    rng = np.random.default_rng([seed, epoch])
    batches = token_batches(src_lengths, tgt_lengths, max_tokens, rng=rng)
    tgt = np.asarray(tgt_lengths)
    updates, current, tokens = [], [], 0
    for batch in batches:
        current.append(tuple(batch))
        tokens += int(tgt[batch].sum())
        if tokens >= update_tokens and len(current) % num_processes == 0:
            updates.append(Update(tuple(current), tokens))
            current, tokens = [], 0
    usable = len(current) - len(current) % num_processes
    if usable:
        current = current[:usable]
        updates.append(Update(tuple(current), int(sum(tgt[list(b)].sum() for b in current))))
    return updates


def collate(examples: dict[str, list[list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors from a dict of lists (`dataset[indices]`); label padding is -100 (no loss)."""
    sources, targets = examples["input_ids"], examples["labels"]
    input_ids = torch.full((len(sources), max(map(len, sources))), pad_token_id, dtype=torch.long)  # (B, S)
    labels = torch.full((len(targets), max(map(len, targets))), -100, dtype=torch.long)  # (B, T)
    for row, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
        input_ids[row, : len(src)] = torch.tensor(src)
        labels[row, : len(tgt)] = torch.tensor(tgt)
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad_token_id).long(), "labels": labels}


# --------------------------------------------------------------------------------------------------------------------
# Checkpoints (§6.1: every 10 minutes) and their average
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class TrainingState:
    """What a checkpoint needs besides model, optimizer, scheduler and RNG: where the run is in its data. Saved as
    JSON (`TRAINING_STATE_FILE`) rather than registered with Accelerate, which would pickle it and load it back with
    `weights_only=False`: resuming someone else's checkpoint would run their code."""

    step: int = 0
    epoch: int = 0
    update_in_epoch: int = 0
    target_tokens: int = 0
    train_seconds: float = 0.0


CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE_FILE = "training_state.json"


class SaveError(RuntimeError):
    """A checkpoint or a model directory could not be written (most often: the disk is full). What was there
    before is intact and the partial folder removed; the message says where and why."""


def is_write_error(error: BaseException) -> bool:
    """Whether `error` is how a failed write (a full disk, a quota, a file size limit) surfaces from the writers that
    checkpoints and model directories go through. Only Python's own file calls raise OSError; the libraries that write
    the weights and states raise types of their own:

    - `open`, `mkdir`, `os.replace`, `shutil.copyfile` (config.json, tokenizer_config.json, the code files): OSError;
    - safetensors (model.safetensors, in `save_state` and `save_pretrained`): its own SafetensorError;
    - `torch.save` (optimizer, scheduler, RNG and training state in `save_state`): RuntimeError from its zip writer
      ("PytorchStreamWriter failed writing file ..." or "[enforce fail at inline_container.cc] unexpected pos ...");
    - tokenizers' Rust writer (tokenizer.json): a bare Exception.
    """
    return isinstance(error, (OSError, SafetensorError, RuntimeError)) or type(error) is Exception


class CheckpointManager:
    """Atomic checkpoints `root/checkpoint-<step>` holding everything `--resume` needs; the last `keep` are kept.

    A checkpoint is written into `root/.tmp-checkpoint-<step>` and renamed when complete, so a crash, a kill or a
    full disk never leaves a partial checkpoint under a final name, and earlier checkpoints are not touched.
    """

    def __init__(self, root: str | Path, keep: int):
        self.root = Path(root)
        self.keep = keep

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
        return sorted(found, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save(self, accelerator, step: int, model=None, state: TrainingState | None = None) -> Path:
        """Every process calls this (each writes its own RNG state); the main process writes `state` as JSON, renames
        and prunes.

        Under FSDP, `model` is also gathered into a plain `model.safetensors`, which averaging reads.

        The save runs in three phases (make the folder, write, publish), and after each one the processes tell each
        other whether any of them failed: a process whose write fails (a full disk on its node) does not leave the
        others waiting for it forever. Every process then raises: the one that failed its own error, reworded as a
        `SaveError` when it is a failed write, the others a `SaveError` saying that another process failed.
        """
        final = self.root / f"{CHECKPOINT_PREFIX}{step:08d}"
        if final.exists():
            return final
        # One name on every process: they all write into the same directory (a shared filesystem across nodes).
        tmp = self.root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}"
        main = accelerator.is_main_process

        def make_folder():
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)

        def write():
            accelerator.save_state(str(tmp), safe_serialization=True)
            if model is not None and accelerator.distributed_type == DistributedType.FSDP:
                accelerator.save_model(model, str(tmp), safe_serialization=True)
            if state is not None and main:
                (tmp / TRAINING_STATE_FILE).write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n")

        def publish():
            if main:
                os.replace(tmp, final)
                for old in self.checkpoints()[: -self.keep]:
                    # Out of the listing first: a kill or a failure during the removal leaves a `.tmp-` folder, which
                    # `--resume` deletes, never a half-removed checkpoint under its final name.
                    doomed = self.root / f".tmp-{old.name}"
                    os.replace(old, doomed)
                    shutil.rmtree(doomed, ignore_errors=True)

        error = None
        for phase in (make_folder, write, publish):
            try:
                phase()
            except BaseException as raised:
                # Whatever stopped the save (a failed write, a bug, Ctrl-C), the others must hear of it.
                error = raised
            if _any_process(accelerator, error is not None):
                break
        else:
            return final
        # The partial folder goes, whichever process failed; only what a failed write raises is reworded, in one
        # error that says what to do.
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        if error is not None and not is_write_error(error):
            raise error
        cause = error if error is not None else "another process could not write its part of it"
        raise SaveError(
            f"could not write checkpoint to {final}: {cause}; free disk space and continue with --resume: earlier "
            f"checkpoints in {self.root} are intact and the partial {tmp.name} was removed."
        ) from error

    def remove_partial(self) -> None:
        """Delete what a killed save left behind."""
        if self.root.is_dir():
            for tmp in self.root.glob(f".tmp-{CHECKPOINT_PREFIX}*"):
                shutil.rmtree(tmp, ignore_errors=True)


def _any_process(accelerator, flag: bool) -> bool:
    """Whether `flag` is set on any process; a collective, so it also waits for every process to reach it."""
    if accelerator.num_processes == 1:
        return flag
    flags = torch.tensor([float(flag)], device=accelerator.device)
    return bool(accelerator.reduce(flags, "max").item())


def average_checkpoints(checkpoints: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights of several checkpoints (§6.1), accumulated in float64.

    Each checkpoint is a directory with `model.safetensors` (what `Accelerator.save_state` or `save_pretrained`
    writes) or that file itself.
    """
    if not checkpoints:
        raise ValueError("average_checkpoints needs at least one checkpoint.")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for n, checkpoint in enumerate(checkpoints):
        path = Path(checkpoint)
        path = path / "model.safetensors" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(
                f"No model weights at {path}; expected a checkpoint directory with model.safetensors."
            )
        weights = load_file(path)
        if n and weights.keys() != total.keys():
            differ = sorted(weights.keys() ^ total.keys())
            raise ValueError(
                f"{path} holds other tensors than {checkpoints[0]} ({differ[:3]}...): only checkpoints of one run "
                "(one model configuration) can be averaged."
            )
        for name, tensor in weights.items():
            if n and tensor.shape != total[name].shape:
                raise ValueError(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, {tuple(total[name].shape)} in {checkpoints[0]}; "
                    "only checkpoints of one model configuration can be averaged."
                )
            dtypes.setdefault(name, tensor.dtype)
            total[name] = total[name] + tensor.double() if n else tensor.double()
    return {name: (tensor / len(checkpoints)).to(dtypes[name]) for name, tensor in total.items()}


def averaged_model(checkpoints: Sequence[str | Path], config_dir: str | Path):
    """A `VaswaniForConditionalGeneration` configured by `config_dir/config.json` (a run's `model_config`) holding
    the average of `checkpoints` (one checkpoint gives that checkpoint's model)."""
    from .configuration_vaswani import VaswaniConfig
    from .modeling_vaswani import VaswaniForConditionalGeneration

    model = VaswaniForConditionalGeneration(VaswaniConfig.from_pretrained(config_dir))
    averaged = average_checkpoints(checkpoints)
    # Tied matrices are stored once; loading the shared one restores the others.
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    missing = [k for k in missing if k not in model.all_tied_weights_keys]
    if missing or unexpected:
        raise ValueError(
            f"The checkpoints do not match the model configured in {config_dir}: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}. Average checkpoints of the run that {config_dir} belongs to."
        )
    model.tie_weights()
    return model.eval()


def save_averaged_model(
    checkpoints: Sequence[str | Path], config_dir: str | Path, output_dir: str | Path, tokenizer=None
) -> Path:
    """Average `checkpoints` (§6.1) into a model directory that `AutoModelForSeq2SeqLM.from_pretrained` loads.

    The directory is written under a temporary name and renamed, so an existing model there is replaced only by a
    complete one; `tokenizer`, if given, is saved beside the weights. See `save_model_dir` for what may be replaced.
    """
    check_replaceable_model_dir(output_dir)  # before the averaging, which takes a while for big models
    return save_model_dir(averaged_model(checkpoints, config_dir), output_dir, tokenizer=tokenizer)


def checkpoint_state(checkpoint: str | Path) -> dict:
    """The `TrainingState` of a checkpoint (update, epoch, tokens, training seconds) as a dict: from its JSON, or from
    the pickle that checkpoints written before the JSON hold, read with `weights_only=True` (plain numbers only, no
    code runs)."""
    checkpoint = Path(checkpoint)
    if (checkpoint / TRAINING_STATE_FILE).is_file():
        return json.loads((checkpoint / TRAINING_STATE_FILE).read_text())
    return torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=True)


# What a model directory saved by `save_model_dir` consists of, besides `REMOTE_CODE_FILES`: what `save_pretrained` of
# the model and of the tokenizer write, and the model card (scripts/make_model_card.py writes it into the folder).
MODEL_DIR_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "README.md",
)
WEIGHT_SHARD_PATTERN = "model-*-of-*.safetensors"


def check_replaceable_model_dir(output_dir: str | Path) -> None:
    """Raises `FileExistsError` unless `output_dir` is absent, an empty folder, or a model directory this package
    saved: a `config.json` of this model type, safetensors weights, and nothing else than the files such a directory
    consists of. Replacing a folder deletes it: anything else there (a training run, a checkpoint, a user's file, a
    subfolder) is never deleted on a guess."""
    from .configuration_vaswani import VaswaniConfig
    from .modeling_vaswani import REMOTE_CODE_FILES

    output_dir = Path(output_dir)
    what_to_do = "Choose another output folder, or delete it yourself if it can go."
    if output_dir.is_symlink() or (output_dir.exists() and not output_dir.is_dir()):
        raise FileExistsError(f"{output_dir} exists and is not a folder; it is left as it is. {what_to_do}")
    if not output_dir.exists():
        return
    entries = sorted(output_dir.iterdir())
    if not entries:
        return
    known = {*MODEL_DIR_FILES, *REMOTE_CODE_FILES}
    others = [
        entry.name + ("/" if entry.is_dir() else "")
        for entry in entries
        if entry.is_symlink()
        or not entry.is_file()
        or (entry.name not in known and not Path(entry.name).match(WEIGHT_SHARD_PATTERN))
    ]
    try:
        model_type = json.loads((output_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    has_weights = any(entry.suffix == ".safetensors" for entry in entries)
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        reason = f"it holds files that are not part of a saved model ({listed})"
    elif model_type != VaswaniConfig.model_type or not has_weights:
        reason = f"it is not a saved {VaswaniConfig.model_type} model (no config.json of one, or no weights)"
    else:
        return
    raise FileExistsError(
        f"Will not replace {output_dir}: {reason}, and replacing deletes the folder. Only a model directory this "
        f"package saved (config.json, *.safetensors, code, tokenizer, README.md) is replaced. {what_to_do}"
    )


def save_model_dir(model, output_dir: str | Path, tokenizer=None) -> Path:
    """`save_pretrained` (and the tokenizer's) into a temporary sibling, then an atomic swap into `output_dir`.

    An existing `output_dir` is replaced only if it is empty or a model directory this package saved (see
    `check_replaceable_model_dir`); anything else raises `FileExistsError` before anything is written. A failed write
    raises `SaveError` and leaves the old model directory as it was.
    """
    output_dir = Path(output_dir)
    # `abspath` gives "." and "x/.." a name, for the sibling folders, without following links.
    target = Path(os.path.abspath(output_dir))
    check_replaceable_model_dir(target)
    existed = target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own (not a fixed `.tmp-<name>`): what is removed on failure is only ever what this call made.
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        # mkdtemp makes the folder private (0700); the model directory gets the permissions of a normal mkdir.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if existed:
            _swap_in(tmp, target)
        else:
            os.replace(tmp, target)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if not is_write_error(error):
            raise
        before = "the model that was there is intact" if existed else "nothing was left behind"
        raise SaveError(
            f"could not write the model to {output_dir}: {error}; free disk space and save again: {before}."
        ) from error
    return output_dir


def remove_partial_model_dirs(target: str | Path) -> None:
    """Delete the temporary folders that a kill during `save_model_dir(..., target)` left beside `target`: the new
    model being written (`.tmp-<name>-*`) and an old one being replaced (`.old-<name>-*`)."""
    target = Path(os.path.abspath(target))
    if target.parent.is_dir():
        for prefix in (".tmp-", ".old-"):
            for leftover in target.parent.glob(f"{prefix}{target.name}-*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    """Replace the folder `target` by the folder `new`: `target` is moved aside, `new` renamed in its place, then the
    old one removed. If the rename fails, `target` is moved back."""
    old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}-", dir=target.parent))
    old.rmdir()  # only the unique name is wanted: renaming a folder onto an existing one fails on Windows
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        warnings.warn(
            f"Saved {target}, but could not remove the previous model moved to {old}; delete it yourself.",
            stacklevel=3,
        )


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system. Returns whether it
    could (False off glibc).

    Training on a CPU allocates and frees activations of a different shape at every micro-batch. By default glibc
    serves each large block with a fresh `mmap` and unmaps it on free, so every step page-faults its activations in
    again: measured on a 2-core machine, 18% of the training time went to the kernel and throughput was 20% lower.
    GPU runs are unaffected (PyTorch caches CUDA memory itself).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def check_tokenizer(config, tokenizer) -> None:
    """A clear error when a tokenizer cannot feed the model: ids beyond the vocabulary or other special ids."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {config.vocab_size}: the model "
            "was built for another tokenizer. Use the tokenizer saved with the model."
        )
    for name in ("pad_token_id", "eos_token_id"):
        if getattr(tokenizer, name) != getattr(config, name):
            raise ValueError(
                f"tokenizer.{name} is {getattr(tokenizer, name)} but the model's config says "
                f"{getattr(config, name)}: the model was built for another tokenizer."
            )


# --------------------------------------------------------------------------------------------------------------------
# The pieces `scripts/train.py` strings together
# --------------------------------------------------------------------------------------------------------------------


def prepare_corpus(data_args, log=None):
    """The run's `DatasetDict`: `train` (cleaned), and `validation` plus any test splits the corpus has.

    `data_args.corpus == "default"` is the built-in English-German corpus; anything else goes to
    `vaswani_hf.data.load_parallel`, with `data_args.validation` the same way.
    """
    from datasets import DatasetDict

    from .data import clean_parallel, load_parallel

    if data_args.corpus == "default":
        from .default_corpus import load_default_corpus

        if {data_args.src_lang, data_args.tgt_lang} != {"en", "de"}:
            raise ValueError(
                f"The default corpus is English-German; data.src_lang/tgt_lang are {data_args.src_lang!r}/"
                f"{data_args.tgt_lang!r}. Use en/de, or point data.corpus at your own files."
            )
        corpus = DatasetDict(load_default_corpus())
    else:
        corpus = DatasetDict(
            train=load_parallel(data_args.corpus, src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang)
        )
    if data_args.validation is not None:
        corpus["validation"] = load_parallel(
            data_args.validation, src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang, split="validation"
        )
    if data_args.clean:
        corpus["train"], report = clean_parallel(
            corpus["train"],
            src_lang=data_args.src_lang,
            tgt_lang=data_args.tgt_lang,
            max_words=data_args.max_words,
            max_ratio=data_args.max_ratio,
        )
        if log:
            log(f"cleaning: {report}")
    return corpus


def load_or_train_tokenizer(data_args, train_split, directory: Path, *, resume: bool):
    """The run's tokenizer, kept in `directory` so the run is complete on its own: the one already there (on
    resume), else `data.tokenizer` if set, else a shared BPE trained on the training split (§5.1)."""
    from transformers import AutoTokenizer

    from .tokenization import train_shared_bpe

    if resume or (directory / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(directory)
    if data_args.tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(data_args.tokenizer)
    else:
        texts = (
            pair[lang] for pair in train_split["translation"] for lang in (data_args.src_lang, data_args.tgt_lang)
        )
        tokenizer = train_shared_bpe(texts, vocab_size=data_args.vocab_size)
    tmp = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, directory)
    return tokenizer


def is_sharded(model) -> bool:
    """Whether `model` is sharded by FSDP2 (`fully_shard`, what `scripts/accelerate/fsdp.yaml` sets up): each of its
    forwards then all-gathers parameters from every process."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


_GENERATE_GATHERS_ROOT: weakref.WeakSet = weakref.WeakSet()


def _gather_root_in_generate(model) -> None:
    """Makes FSDP2 gather the root's parameters (the shared embedding) around `generate()` as around `forward()`:
    `generate()` runs the encoder directly, not through the root's forward, whose hooks are what gathers them."""
    from torch.distributed.fsdp import register_fsdp_forward_method

    if model not in _GENERATE_GATHERS_ROOT:
        register_fsdp_forward_method(model, "generate")
        _GENERATE_GATHERS_ROOT.add(model)


@torch.no_grad()
def validation_loss(
    model, dataset, *, max_tokens: int, pad_token_id: int, accelerator, label_smoothing: float
) -> dict[str, float]:
    """Per-token label-smoothed loss (the training objective), plain cross-entropy and the perplexity from it on a
    tokenized split, shared by processes."""
    model.eval()
    batches = token_batches(
        [len(x) for x in dataset["input_ids"]],
        [len(x) for x in dataset["labels"]],
        max_tokens,
        rng=np.random.default_rng(0),
    )
    totals = torch.zeros(3, dtype=torch.float64, device=accelerator.device)  # smoothed loss, nll, tokens
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    # A sharded model's every forward is a collective: all processes must make as many, so one with fewer batches
    # than the others runs a batch more whose result it does not count.
    forwards = math.ceil(len(batches) / accelerator.num_processes) if is_sharded(model) else len(mine)
    for i in range(forwards):
        indices = mine[i] if i < len(mine) else batches[0]
        batch = {k: v.to(accelerator.device) for k, v in collate(dataset[indices], pad_token_id).items()}
        with accelerator.autocast():
            logits = teacher_forced_logits(model, batch)
        if i >= len(mine):
            continue
        labels = batch["labels"]
        smoothed = label_smoothed_loss(logits, labels, label_smoothing, num_items_in_batch=1)
        nll = label_smoothed_loss(logits, labels, 0.0, num_items_in_batch=1)
        totals += torch.stack([smoothed.double(), nll.double(), (labels != -100).sum().double()])
    totals = accelerator.reduce(totals, "sum")
    loss_sum, nll_sum, tokens = totals.tolist()
    nll = nll_sum / tokens
    return {"valid/loss": loss_sum / tokens, "valid/nll": nll, "valid/ppl": math.exp(nll), "valid/tokens": tokens}


def validate(model, tokenizer, valid_set, valid_pairs, cfg, accelerator) -> dict[str, float]:
    """Validation loss and perplexity on the whole split, BLEU/chrF with beam search on its first sentences."""
    from .evaluation import score, translate

    metrics = validation_loss(
        model,
        valid_set,
        max_tokens=cfg.eval.max_tokens,
        pad_token_id=tokenizer.pad_token_id,
        accelerator=accelerator,
        label_smoothing=cfg.train.label_smoothing,
    )
    n = min(cfg.data.bleu_sentences, len(valid_pairs))
    # Unsharded (one process, DDP), the main process decodes alone while the others wait. Sharded (FSDP2), every
    # forward is a collective: every process decodes the same sentences, `synced_gpus` keeping them stepping together
    # until all are done.
    sharded = is_sharded(model)
    if n and (sharded or accelerator.is_main_process):
        pairs = valid_pairs[:n]["translation"]
        if sharded:
            _gather_root_in_generate(model)
        with accelerator.autocast():
            hypotheses = translate(
                model,
                tokenizer,
                [p[cfg.data.src_lang] for p in pairs],
                max_tokens=cfg.eval.max_tokens,
                num_beams=cfg.eval.num_beams,
                **({"synced_gpus": True} if sharded else {}),
            )
        scores = score(hypotheses, [p[cfg.data.tgt_lang] for p in pairs])
        metrics.update({"valid/bleu": scores["bleu"], "valid/chrf": scores["chrf"]})
    accelerator.wait_for_everyone()
    model.train()
    return metrics
