"""Checkpoints (§6.1: every 10 minutes) that `--resume` continues from exactly, and their average."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import DistributedType
from safetensors import safe_open
from safetensors.torch import load_file

from ..files import AtomicDir, SaveError, check_replaceable_model_dir, is_write_error, save_model_dir


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
        folder = AtomicDir(final, temporary=self.root / f".tmp-{CHECKPOINT_PREFIX}{step:08d}")
        tmp = folder.temporary
        main = accelerator.is_main_process

        def make_folder():
            if main:
                folder.create()

        def write():
            accelerator.save_state(str(tmp), safe_serialization=True)
            if model is not None and accelerator.distributed_type == DistributedType.FSDP:
                accelerator.save_model(model, str(tmp), safe_serialization=True)
            if state is not None and main:
                (tmp / TRAINING_STATE_FILE).write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n")

        def publish():
            if main:
                folder.publish()
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
            folder.discard()
        if error is not None and not is_write_error(error):
            raise error
        cause = error if error is not None else "another process could not write its part of it"
        raise SaveError(
            f"could not write checkpoint to {final}: {cause}; free disk space and continue with --resume: earlier "
            f"checkpoints in {self.root} are intact and the partial {tmp.name} was removed."
        ) from error

    def latest_intact(self, num_processes: int, log=print, set_aside: bool = True) -> Path | None:
        """The newest checkpoint that `checkpoint_problems` finds whole for `num_processes` processes. Newer ones
        that are damaged (a truncated file, a missing random state) are reported through `log` and, with
        `set_aside`, renamed `.damaged-<name>`: out of the listing, so that neither pruning nor averaging takes them,
        and kept for inspection. Resuming from a damaged checkpoint would fail, or continue other than the run would
        have: the newest intact one resumes exactly."""
        damaged = []
        chosen = None
        for checkpoint in reversed(self.checkpoints()):
            problems = checkpoint_problems(checkpoint, num_processes)
            if not problems:
                chosen = checkpoint
                break
            damaged.append((checkpoint, problems))
        for checkpoint, problems in damaged:
            instead = f"resuming from {chosen.name}" if chosen is not None else "no intact checkpoint is left"
            log(f"checkpoint {checkpoint.name} is damaged ({'; '.join(problems)}): {instead}")
            if set_aside:
                os.replace(checkpoint, checkpoint.with_name(f".damaged-{checkpoint.name}"))
        return chosen

    def remove_partial(self) -> None:
        """Delete what a killed save left behind."""
        if self.root.is_dir():
            for tmp in self.root.glob(f".tmp-{CHECKPOINT_PREFIX}*"):
                shutil.rmtree(tmp, ignore_errors=True)


def store_tied_weights_once(accelerator) -> None:
    """Makes `accelerator.save_state` store each tied matrix (§3.4: one matrix for both embeddings and the output
    projection) once, as `save_pretrained` does, without a warning.

    safetensors cannot hold two names of one tensor, so accelerate (1.16) keeps one name of each shared tensor and
    logs "Removed shared tensor {...} while saving. This should be OK, but check ..." at every checkpoint. Here the
    names a model declares tied (`all_tied_weights_keys`: target -> source) are dropped before accelerate looks, so
    a correct checkpoint draws no warning; any other sharing is still reported by accelerate. `load_state` restores
    the dropped names through `safetensors.torch.load_model`, which accepts a missing name whose tensor is shared
    with a present one.
    """

    def drop_tied_names(models, weights, output_dir):
        # `weights` holds the state dicts of the models not saved by FSDP or DeepSpeed, in the models' order; their
        # names may carry a wrapper's prefix ("module." under DDP).
        for model, state in zip(models, weights, strict=False):
            tied = getattr(accelerator.unwrap_model(model), "all_tied_weights_keys", None) or {}
            for name in list(state):
                for target, source in tied.items():
                    if not name.endswith(target):
                        continue
                    kept = name[: len(name) - len(target)] + source
                    if kept in state and state[kept].data_ptr() == state[name].data_ptr():
                        del state[name]
                        break

    accelerator.register_save_state_pre_hook(drop_tied_names)


def checkpoint_problems(checkpoint: str | Path, num_processes: int = 1) -> list[str]:
    """What keeps `checkpoint` from resuming a run of `num_processes` processes exactly: missing files, weights whose
    safetensors header does not cover the file (a truncated write), an optimizer or schedule whose archive fails its
    checksums, a random state missing for a process. Empty when the checkpoint is whole."""
    checkpoint = Path(checkpoint)
    problems = []
    weights = sorted(checkpoint.glob("model*.safetensors"))
    if not weights:
        problems.append("no model.safetensors")
    for path in weights:
        try:
            with safe_open(path, "pt") as file:
                file.keys()
        except Exception as error:  # safetensors raises its own error type for a damaged file
            problems.append(f"{path.name} cannot be read ({error})")
    for name in ("optimizer.bin", "scheduler.bin"):
        path = checkpoint / name
        if not path.is_file():
            problems.append(f"no {name}")
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
        except (zipfile.BadZipFile, OSError) as error:
            broken = str(error)
        if broken is not None:
            problems.append(f"{name} is damaged ({broken})")
    missing = [i for i in range(num_processes) if not (checkpoint / f"random_states_{i}.pkl").is_file()]
    if missing:
        which = ", ".join(map(str, missing))
        problems.append(f"no random state for process {which}: a resume would not draw the same dropout")
    if not (checkpoint / TRAINING_STATE_FILE).is_file() and not (checkpoint / "custom_checkpoint_0.pkl").is_file():
        problems.append(f"no {TRAINING_STATE_FILE}")
    return problems


def _any_process(accelerator, flag: bool) -> bool:
    """Whether `flag` is set on any process; a collective, so it also waits for every process to reach it."""
    if accelerator.num_processes == 1:
        return flag
    flags = torch.tensor([float(flag)], device=accelerator.device)
    anywhere = bool(accelerator.reduce(flags, "max").item())
    # gloo's worker thread frees the reduced tensor after `item()` has returned, and needs the GIL to do so. Were this
    # the last collective before the process exits, the main thread could reach the process group's destructor first,
    # which joins that thread while holding the GIL: the process would never exit (seen with torch 2.13 at the end of
    # two-process runs, a barrier after the reduction did not prevent it). A moment without the GIL lets it finish.
    time.sleep(0.05)
    return anywhere


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
        try:
            weights = load_file(path)
        except Exception as error:  # safetensors raises its own error type for a damaged file
            raise ValueError(
                f"{path} cannot be read ({error}): the checkpoint is damaged; average the others."
            ) from None
        not_finite = [name for name, tensor in weights.items() if not torch.isfinite(tensor).all()]
        if not_finite:
            raise ValueError(
                f"{path} holds weights that are not finite (NaN or infinity) in {len(not_finite)} of its "
                f"{len(weights)} tensors ({', '.join(not_finite[:3])}{', ...' if len(not_finite) > 3 else ''}): the "
                "run had diverged when it was saved. Average only the checkpoints before it."
            )
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
    """The model configured by `config_dir/config.json` (a run's `model_config`: any `AutoModelForSeq2SeqLM`) holding
    the average of `checkpoints` (one checkpoint gives that checkpoint's model)."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from .. import VaswaniConfig  # noqa: F401  (registers this package's model type with the Auto classes)

    model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(config_dir))
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
