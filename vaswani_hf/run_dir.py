"""The folder of a training run: the one place that knows where a run keeps each of its files, and the lock that lets
one process train in it at a time.

    output_dir/
      .lock                 held by the process that trains here (host, pid and start time inside)
      run_config.yaml       the settings the run was started with (`vaswani_hf.training.run_config.RunConfig`)
      corpus.json           the build of the default corpus it trains on (`vaswani_hf.training.corpus`)
      tokenizer/            its tokenizer, with `source.json`: what the tokenizer was trained on
      model_config/         the model's `config.json`, from which averaging builds the model
      checkpoints/          `checkpoint-<update>/`, written by `vaswani_hf.training.checkpoints.CheckpointManager`
      model/                the average of the last checkpoints (§6.1), with its tokenizer and model card
      train_summary.json    what the run did (updates, epochs, tokens, minutes, checkpoints averaged), once finished
      results.json          test scores, curve and translations of a study or the main job
      eval/                 hypotheses of those evaluations, one folder per test split

Every command that reads or writes a run opens it as `RunDir(output_dir)` and asks it for paths.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from .files import write_atomic


class RunDirError(RuntimeError):
    """A run folder that cannot be used as asked: the message says why and what to do."""


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    # ---------------------------------------------------------------------------------------------------- the layout
    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def run_config(self) -> Path:
        return self.root / "run_config.yaml"

    @property
    def corpus_record(self) -> Path:
        return self.root / "corpus.json"

    @property
    def precision_record(self) -> Path:
        """The training precision and why: the setting, or what the CPU probe measured."""
        return self.root / "precision.json"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokenizer_source(self) -> Path:
        return self.tokenizer / "source.json"

    @property
    def model_config(self) -> Path:
        return self.root / "model_config"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def train_summary(self) -> Path:
        return self.root / "train_summary.json"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    def eval(self, split: str) -> Path:
        return self.root / "eval" / split

    # --------------------------------------------------------------------------------------------------- the records
    def has_checkpoints(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

    def is_finished(self) -> bool:
        """Whether the run trained to its end (it wrote its summary)."""
        return self.train_summary.is_file()

    def train_arguments(self) -> list[str]:
        """What a command that trains into this folder passes to `vaswani-train` besides its settings: `--resume`
        when there are checkpoints to continue from, and the folder."""
        return [*(["--resume"] if self.has_checkpoints() else []), f"output_dir={self.root}"]

    def check_start(self, *, resume: bool) -> None:
        """Refuses to start a new run over one that has checkpoints (it would train from scratch and mix the two), and
        to resume in a folder that has none."""
        if not resume and self.has_checkpoints():
            raise RunDirError(
                f"{self.root} already holds checkpoints: pass --resume to continue, or choose another output_dir."
            )
        if resume and not self.has_checkpoints():
            raise RunDirError(
                f"--resume: {self.root} holds no checkpoint to resume from (the run stopped before its first one, or "
                "the folder is not a run's): start it without --resume."
            )

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8"))

    def write_json(self, path: Path, record: dict) -> None:
        write_atomic(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------------------------------------------ the lock
    def lock(self, log=print) -> RunLock:
        """Takes the folder's lock for this process (until `release()` or the process ends), or raises
        `RunDirError` naming the process that holds it. A lock file left by a process that has ended (a crash, a
        kill) is taken over, and `log` says so."""
        return RunLock(self, log)


class RunLock:
    """An exclusive `flock` on `RunDir.lock_file`: the operating system releases it when its process ends, however it
    ends, so a lock is never stale while the file can outlive its owner. The file names the owner for the message a
    second process gets."""

    def __init__(self, run_dir: RunDir, log):
        import fcntl

        run_dir.root.mkdir(parents=True, exist_ok=True)
        self.path = run_dir.lock_file
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(self._fd)
            os.close(self._fd)
            raise RunDirError(
                f"{run_dir.root} is in use by another run ({owner}): two runs in one folder would overwrite each "
                "other's checkpoints. Wait for it to end, or choose another output_dir."
            ) from None
        previous = _owner(self._fd)
        if previous != "owner unknown":
            log(f"taking over the lock of {run_dir.root}, left by a run that has ended ({previous})")
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, (json.dumps(record) + "\n").encode(), 0)

    def release(self) -> None:
        """Ends the lock. The file stays, emptied: removing it could let a process that opened it just before hold a
        lock on a file no longer in the folder while a third makes a new one."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _owner(fd: int) -> str:
    """Who the lock file at `fd` names: "pid P on host H, since T"."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {record['pid']} on {record['host']}, since {record['started']}"
    except (ValueError, KeyError, OSError):
        return "owner unknown"
