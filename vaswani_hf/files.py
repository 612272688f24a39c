"""Writing and reading files so that nothing is lost: atomic file writes, files written piece by piece that an
interrupted run continues, folders written whole and renamed into place (model directories swapped in whole), failed
writes (a full disk) reported in one error that says what was kept, and one reader of sentence files."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Writes `content` (text as UTF-8, or bytes) to `path` through a temporary file in the same folder and
    `os.replace`, so that `path` never holds a partial file, even when the process is killed while writing. Missing
    parent folders are made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        text_mode = dict(mode="w", encoding="utf-8", newline="") if isinstance(content, str) else dict(mode="wb")
        with os.fdopen(handle, **text_mode) as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file readable by its owner only; give it the permissions of a normally written file.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class AtomicDir:
    """A folder written whole or not at all: written into a temporary sibling of `target` (on the same file system),
    then renamed into place in one step. A crash, a kill or a full disk never leaves a partial folder under `target`'s
    name, and an existing `target` stays as it was until the new one is complete.

        with AtomicDir(target, replace=True) as folder:
            ...  # write everything into `folder`

    Leaving the block normally publishes the folder; an exception removes it and propagates, `target` left as it was.
    With `replace`, an existing `target` is swapped out and deleted; without, publishing over a `target` that is not
    an empty folder raises `FileExistsError` (another writer got there first).

    The temporary folder is `.tmp-<name>-<random>`, a name of its own, so that what is removed on failure is only ever
    what this write made (`remove_partial_model_dirs` clears those a kill left), or `temporary`, a fixed name that
    several processes writing into one folder all know (an earlier leftover of that name is removed first). Writers
    whose steps are spread over several processes call `create`, `publish` and `discard` themselves.
    """

    def __init__(
        self, target: str | os.PathLike, *, replace: bool = False, temporary: str | os.PathLike | None = None
    ):
        # `abspath` gives "." and "x/.." a name, for the sibling folders, without following links.
        self.target = Path(os.path.abspath(target))
        self.replace = replace
        self.temporary = Path(temporary) if temporary is not None else None

    def create(self) -> Path:
        """Makes the empty temporary folder, with the permissions the user's umask gives (mkdtemp's are 0700), and
        returns it."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.temporary is None:
            self.temporary = Path(tempfile.mkdtemp(prefix=f".tmp-{self.target.name}-", dir=self.target.parent))
        else:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary.mkdir()
        os.chmod(self.temporary, 0o777 & ~_current_umask())
        return self.temporary

    def publish(self) -> Path:
        """Renames the complete temporary folder to `target` (see the class for an existing `target`)."""
        if self.replace and self.target.exists():
            _swap_in(self.temporary, self.target)
            return self.target
        try:
            os.replace(self.temporary, self.target)
        except OSError as error:
            if not self.target.exists():
                raise
            raise FileExistsError(f"{self.target} already exists; it is left as it is") from error
        return self.target

    def discard(self) -> None:
        """Removes the temporary folder and whatever was written into it."""
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)

    def __enter__(self) -> Path:
        return self.create()

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self.discard()
            return
        try:
            self.publish()
        except BaseException:
            self.discard()
            raise


def _current_umask() -> int:
    """The process's umask (reading it means setting it: it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


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
            f"Saved {target}, but could not remove the previous folder moved to {old}; delete it yourself.",
            stacklevel=4,
        )


def check_output_file(path: str | os.PathLike) -> None:
    """Raises `ValueError` naming the problem when `path` cannot take a file written by `write_atomic`: it is a
    folder, or its folder cannot be created or written to. Called before long work, so that the work is not lost to
    an output found unusable at the end."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name for the output (e.g. {path / 'output.txt'}).")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no permission to write in {folder}; choose another output.")


def check_output_dir(path: str | os.PathLike) -> None:
    """As `check_output_file`, for a folder that will be created (or written into) at `path`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file; give a folder for the output (it is created if missing).")
    check_output_file(path / "output" if path.is_dir() else path)


def iter_lines(path: str | os.PathLike | int) -> Iterator[str]:
    """The lines of a UTF-8 text file, one sentence each, read one at a time: a line ends at "\\n" only ("\\r\\n"
    counts as "\\n", a final line break ends the last line), and a byte-order mark at the start of the file is dropped.
    `path` may also be an open file descriptor, such as `sys.stdin.fileno()`; it is left open.

    This is the one reader of sentence files, for corpora (`vaswani_hf.data`) as for test sets and inputs to translate.

    Raises:
        ValueError: if `path` is a folder, or a line is not UTF-8 (the message gives the file, the line and the byte).
    """
    name = "standard input" if isinstance(path, int) else str(path)
    if not isinstance(path, int) and Path(path).is_dir():
        raise ValueError(f"{name} is a folder, not a text file: give the file of sentences inside it.")
    # Read as bytes and split at b"\n" only: universal newlines (Python's default) would also end a line at a lone
    # "\r", and str.splitlines at U+2028, \x1c, ... too; these occur inside sentences of web-crawled text, and splitting
    # there shifts every later line against the other side of the corpus or against its reference. Each line is then
    # decoded on its own, so that a byte that is not UTF-8 is reported at its line.
    with open(path, "rb", closefd=not isinstance(path, int)) as file:
        for number, raw in enumerate(file, start=1):
            # Some editors and spreadsheet exports start UTF-8 files with a byte-order mark, which would otherwise stay
            # glued to the first sentence (and cost BLEU against a reference without one).
            if number == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{name} line {number} is not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1}): "
                    "save the file as UTF-8, e.g. with `iconv -f latin1 -t utf-8`."
                ) from None
            yield line.removesuffix("\n").removesuffix("\r")


def read_lines(path: str | os.PathLike | int) -> list[str]:
    """All the lines of a UTF-8 text file (see `iter_lines`)."""
    return list(iter_lines(path))


# What `PartialFile` writes in its records, and looks for before it touches a file of that name.
PARTIAL_RECORD_FORMAT = "vaswani_hf partial output, version 1"


class PartialFile:
    """A text file written piece by piece, over one run or several: a kill, a crash or Ctrl-C loses at most the
    piece being written, and a rerun with the same `identity` continues after the last piece written.

        with PartialFile(target, identity) as partial:
            for text, lines in pieces_after(partial.lines):
                partial.append(text, lines)

    The pieces go to `<target>.partial`, and its progress to the record `<target>.partial.json`: the lines and bytes
    written, `identity` (what decides the content: the input, the model, ...) and `notes` (kept for a reader, not
    compared). A piece is flushed to disk before the record that counts it replaces the previous one (`write_atomic`),
    so the record never counts a byte that a kill can lose. Leaving the block normally renames the partial file to
    `target` in one step (replacing an earlier `target`) and removes the record; an exception leaves both for a rerun.

    Entering the block looks at what an earlier run left beside `target`:

    - nothing, or the record of a run that could not be continued (its `identity` was None): starts afresh;
    - a record with the same `identity`: truncates the partial file to the bytes the record counts (a kill in the
      middle of a write leaves a torn piece after them) and continues after its `lines`;
    - a record with another `identity`, or this run's None: raises `ValueError` naming what differs;
    - a partial file without a record, or a record file that is not one: raises `FileExistsError` and leaves it as
      it is: nothing this class did not write is truncated or replaced, unless `restart`, which discards them.

    `identity=None` says that this run cannot be continued (its input cannot be read again): it writes the same way,
    and a rerun starts afresh. Where the system has `fcntl`, the partial file is locked while it is written, and a
    second writer is refused.
    """

    def __init__(
        self,
        target: str | os.PathLike,
        identity: dict | None,
        *,
        notes: dict | None = None,
        restart: bool = False,
    ):
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".partial")
        self.record_path = self.target.with_name(self.target.name + ".partial.json")
        # As it comes back from the record's JSON (tuples as lists), so that an unchanged identity compares equal.
        self.identity = None if identity is None else json.loads(json.dumps(identity, default=repr))
        self.notes = notes or {}
        self.restart = restart
        self.lines = 0
        self.bytes = 0
        self._file = None

    def __enter__(self) -> PartialFile:
        existed = self.path.exists()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        # Opening for appending changes nothing in an existing file; only the checks below decide what may.
        self._file = open(self.path, "ab")
        locked = False
        try:
            _lock(self._file, self.path)
            locked = True
            self.lines, self.bytes = (0, 0) if self.restart else self._resume_point(existed)
            # The record is written before the partial file is cut, so that a partial file is never changed without
            # a record that makes it this class's.
            self._write_record()
            self._file.truncate(self.bytes)
        except BaseException:
            self._file.close()
            # The empty file this call made goes too; one another process holds the lock of is that process's.
            if locked and not existed:
                self.path.unlink(missing_ok=True)
            raise
        return self

    def append(self, text: str, lines: int) -> None:
        """Writes a piece of `lines` lines to disk, then counts it in the record."""
        data = text.encode("utf-8")
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self.lines += lines
        self.bytes += len(data)
        self._write_record()

    def __exit__(self, kind, error, traceback) -> None:
        self._file.close()
        if kind is None:
            os.replace(self.path, self.target)
            self.record_path.unlink(missing_ok=True)

    def _resume_point(self, existed: bool) -> tuple[int, int]:
        """(lines, bytes) of an earlier run to continue after, (0, 0) to start afresh; raises when neither may be."""
        record = self._read_record()
        if record is None:
            if existed:
                raise FileExistsError(
                    f"{self.path} exists without a progress record ({self.record_path.name}): it is not the "
                    "unfinished output of an interrupted run, or its record was deleted; it is left as it is. Move it "
                    "away, or discard it with --restart."
                )
            return 0, 0
        if record["identity"] is None:
            return 0, 0
        if self.identity is None:
            raise ValueError(
                f"{self.path} holds the first {record['lines']:,} lines of an interrupted run that can be continued, "
                "but this run's input cannot be read again to check it is the same: rerun the interrupted command to "
                "continue it, discard it with --restart, or write to another output."
            )
        differences = _differences(record["identity"], self.identity)
        if differences:
            raise ValueError(
                f"{self.path} holds the first {record['lines']:,} lines of an interrupted run that differs from "
                f"this one in {'; '.join(differences)}: rerun with the same ones to continue it, discard it with "
                "--restart, or write to another output."
            )
        if not existed:
            return 0, 0
        size = self.path.stat().st_size
        if size < record["bytes"]:
            raise ValueError(
                f"{self.path} has {size:,} bytes, fewer than the {record['bytes']:,} its record counts: it was "
                "changed after the run was interrupted; discard it with --restart."
            )
        return record["lines"], record["bytes"]

    def _read_record(self) -> dict | None:
        try:
            record = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("format") != PARTIAL_RECORD_FORMAT:
            raise FileExistsError(
                f"{self.record_path} is not a progress record of this package; it is left as it is. Move it away, "
                "or write to another output."
            )
        return record

    def _write_record(self) -> None:
        record = {"format": PARTIAL_RECORD_FORMAT, "target": self.target.name, "lines": self.lines}
        record.update(bytes=self.bytes, identity=self.identity, notes=self.notes)
        write_atomic(self.record_path, json.dumps(record, indent=2, ensure_ascii=False, default=repr) + "\n")


def _lock(file, path: Path) -> None:
    """Takes the lock of an open file, or raises `FileExistsError` if another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows has no fcntl
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FileExistsError(
            f"another process is writing {path}: wait for it to finish, or write to another output."
        ) from None


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two identities, key by key and one level into dicts: 'key (field A then, B now)'."""

    def brief(value) -> str:
        text = str(value)
        return text if len(text) <= 16 else text[:12] + "..."

    found = []
    for key in sorted(old.keys() | new.keys()):
        before, now = old.get(key), new.get(key)
        if before == now:
            continue
        if isinstance(before, dict) and isinstance(now, dict):
            fields = sorted(field for field in before.keys() | now.keys() if before.get(field) != now.get(field))
            changes = [f"{field} {brief(before.get(field))} then, {brief(now.get(field))} now" for field in fields]
        else:
            changes = [f"{brief(before)} then, {brief(now)} now"]
        found.append(f"{key} ({', '.join(changes)})")
    return found


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


# What a model directory saved by `save_model_dir` consists of, besides `REMOTE_CODE_FILES`: what `save_pretrained` of
# the model and of the tokenizer write, and the model card (vaswani-model-card writes it into the folder).
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


# The model types this package's commands train and save (`model.architecture` of a run config).
TRAINED_MODEL_TYPES = ("vaswani", "marian", "rnn_seq2seq")


def check_replaceable_model_dir(output_dir: str | Path) -> None:
    """Raises `FileExistsError` unless `output_dir` is absent, an empty folder, or a model directory this package
    saved: a `config.json` of this model type, safetensors weights, and nothing else than the files such a directory
    consists of. Replacing a folder deletes it: anything else there (a training run, a checkpoint, a user's file, a
    subfolder) is never deleted on a guess."""
    from .modeling_rnn import REMOTE_CODE_FILES as RNN_CODE_FILES
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
    known = {*MODEL_DIR_FILES, *REMOTE_CODE_FILES, *RNN_CODE_FILES}
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
    elif model_type not in TRAINED_MODEL_TYPES or not has_weights:
        reason = f"it is not a saved {' or '.join(TRAINED_MODEL_TYPES)} model (no config.json of one, or no weights)"
    else:
        return
    raise FileExistsError(
        f"Will not replace {output_dir}: {reason}, and replacing deletes the folder. Only a model directory this "
        f"package saved (config.json, *.safetensors, code, tokenizer, README.md) is replaced. {what_to_do}"
    )


def save_model_dir(model, output_dir: str | Path, tokenizer=None) -> Path:
    """`save_pretrained` (and the tokenizer's) into a temporary sibling, then an atomic swap into `output_dir`
    (`AtomicDir`).

    An existing `output_dir` is replaced only if it is empty or a model directory this package saved (see
    `check_replaceable_model_dir`); anything else raises `FileExistsError` before anything is written. A failed write
    raises `SaveError` and leaves the old model directory as it was.
    """
    output_dir = Path(output_dir)
    check_replaceable_model_dir(output_dir)
    existed = output_dir.exists()
    try:
        with AtomicDir(output_dir, replace=True) as tmp:
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            # transformers writes model.safetensors through a private temporary file (0600): the files get the
            # permissions the user's umask gives what they write, as the folder does.
            umask = _current_umask()
            for entry in tmp.rglob("*"):
                if not entry.is_symlink():
                    os.chmod(entry, (0o777 if entry.is_dir() else 0o666) & ~umask)
    except BaseException as error:
        if not is_write_error(error):
            raise
        before = "the model that was there is intact" if existed else "nothing was left behind"
        raise SaveError(
            f"could not write the model to {output_dir}: {error}; free disk space and save again: {before}."
        ) from error
    return output_dir


def remove_partial_model_dirs(target: str | Path) -> None:
    """Delete the temporary folders that a kill during an `AtomicDir` write of `target` (`save_model_dir(...,
    target)`) left beside it: the new folder being written (`.tmp-<name>-*`) and an old one being replaced
    (`.old-<name>-*`)."""
    target = Path(os.path.abspath(target))
    if target.parent.is_dir():
        for prefix in (".tmp-", ".old-"):
            for leftover in target.parent.glob(f"{prefix}{target.name}-*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
