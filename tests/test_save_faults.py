"""Saving checkpoints and model directories when things go wrong: an output folder that holds other files (a training
run, a checkpoint, the user's own files) is refused rather than deleted, and a write that fails (a full disk) removes
its partial folder, keeps what was there before and says so in one clear error."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FakeAccelerator
from safetensors import SafetensorError
from safetensors.torch import save_model

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.cli import average as average_command
from vaswani_hf.files import save_model_dir
from vaswani_hf.training.checkpoints import CheckpointManager

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = ["the dog sees a cat", "der Hund sieht eine Katze", "a red car", "ein rotes Auto"] * 5


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under `folder` (files with their bytes), to compare before and after."""
    return {str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None for path in folder.rglob("*")}


@pytest.fixture
def run(tmp_path, tiny_config):
    """A training run as vaswani-train leaves it: checkpoints, model_config, tokenizer, run config, and a file of
    the user's."""
    root = tmp_path / "run"
    config = tiny_config()
    config.save_pretrained(root / "model_config")
    train_shared_bpe(SENTENCES, vocab_size=60).save_pretrained(root / "tokenizer")
    for step in (1, 2, 3):
        torch.manual_seed(step)
        checkpoint = root / "checkpoints" / f"checkpoint-{step:08d}"
        # The weights as save_state stores them (one copy of the tied matrix), without a model directory's files.
        VaswaniForConditionalGeneration(config).save_pretrained(tmp_path / "saved")
        checkpoint.mkdir(parents=True)
        os.replace(tmp_path / "saved" / "model.safetensors", checkpoint / "model.safetensors")
        for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
            torch.save({"step": step}, checkpoint / name)
        (checkpoint / "training_state.json").write_text(json.dumps({"step": step}))
    shutil.rmtree(tmp_path / "saved")
    (root / "run_config.yaml").write_text("output_dir: run\n")
    (root / "notes.txt").write_text("my notes on this run\n")
    return root


# Fault 1: an --output that is not a model directory the package wrote is refused, never deleted
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "output", [".", "checkpoints", "checkpoints/checkpoint-00000003", "checkpoints/new", "tokenizer", "model_config"]
)
def test_average_checkpoints_script_refuses_the_run_and_its_folders_before_any_work(run, output, monkeypatch, capsys):
    """The reported fault: `vaswani-average RUN --last 2 --output RUN` deleted the run and exited 0."""
    import vaswani_hf.training.checkpoints

    def no_work(*args, **kwargs):
        raise AssertionError("the script averaged checkpoints before refusing its --output")

    monkeypatch.setattr(vaswani_hf.training.checkpoints, "averaged_model", no_work)
    before = snapshot(run)
    with pytest.raises(SystemExit) as exit_info:
        average_command.main([str(run), "--last", "2", "--output-dir", str(run / output)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--output" in error and "choose" in error.lower(), error
    assert snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["run"]  # no temporary folder left beside it


def test_average_checkpoints_script_refuses_a_folder_of_other_files(run, tmp_path, capsys):
    elsewhere = tmp_path / "results"
    elsewhere.mkdir()
    (elsewhere / "bleu.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        average_command.main([str(run), "--last", "2", "--output-dir", str(elsewhere)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert str(elsewhere) in error and "bleu.json" in error and "delete it yourself" in error, error
    assert (elsewhere / "bleu.json").read_text() == "{}"


def test_average_checkpoints_script_writes_and_then_replaces_its_own_model_directory(run, capsys):
    from transformers import AutoModelForSeq2SeqLM

    script = average_command
    out = run / "model-avg"
    assert script.main([str(run), "--last", "2", "--output-dir", str(out)]) == 0
    (out / "README.md").write_text("# a model card\n")  # the card belongs to a model directory
    assert script.main([str(run), "--last", "3", "--output-dir", str(out)]) == 0
    assert "averaged checkpoint-00000001, checkpoint-00000002, checkpoint-00000003" in capsys.readouterr().out
    AutoModelForSeq2SeqLM.from_pretrained(out)
    assert (out / "tokenizer.json").is_file() and not (out / "README.md").exists()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def user_folder(folder: Path, tiny_config) -> None:
    """A model directory a user added a file to."""
    save_model_dir(VaswaniForConditionalGeneration(tiny_config()), folder)
    (folder / "my_results.txt").write_text("keep me\n")


def foreign_model(folder: Path, tiny_config) -> None:
    """Model files of a model this package does not make."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_model(torch.nn.Linear(2, 2), str(folder / "model.safetensors"))


def tokenizer_only(folder: Path, tiny_config) -> None:
    train_shared_bpe(SENTENCES, vocab_size=60).save_pretrained(folder)


def with_subfolder(folder: Path, tiny_config) -> None:
    save_model_dir(VaswaniForConditionalGeneration(tiny_config()), folder)
    (folder / "eval").mkdir()
    (folder / "eval" / "bleu.txt").write_text("27.3\n")


def a_file(folder: Path, tiny_config) -> None:
    folder.write_text("not a folder\n")


@pytest.mark.parametrize("make", [user_folder, foreign_model, tokenizer_only, with_subfolder, a_file])
def test_save_model_dir_refuses_what_is_not_its_own_model_directory(tmp_path, tiny_config, make):
    target = tmp_path / "out"
    make(target, tiny_config)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="out.*(another|delete it yourself)"):
        save_model_dir(VaswaniForConditionalGeneration(tiny_config()), target)
    assert snapshot(tmp_path) == before


def test_save_model_dir_replaces_its_own_model_directory_and_an_empty_folder(tmp_path, tiny_config):
    target = tmp_path / "out"
    target.mkdir()
    first = VaswaniForConditionalGeneration(tiny_config())
    save_model_dir(first, target, tokenizer=train_shared_bpe(SENTENCES, vocab_size=60))
    (target / "README.md").write_text("# card\n")
    second = VaswaniForConditionalGeneration(tiny_config())
    save_model_dir(second, target)
    loaded = VaswaniForConditionalGeneration.from_pretrained(target)
    torch.testing.assert_close(loaded.state_dict(), second.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (os.stat(target).st_mode & 0o777) == (0o777 & ~current_umask())  # a normal folder, not mkdtemp's 0700


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Fault 2: a failed write (a full disk) raises SafetensorError or RuntimeError, not only OSError
# --------------------------------------------------------------------------------------------------------------------


# What a full disk really raises, by the writer: safetensors (model.safetensors), torch.save (optimizer, scheduler,
# RNG and training state), Python's open (config.json), tokenizers' Rust writer (tokenizer.json).
WRITE_ERRORS = [
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
    OSError(28, "No space left on device"),
    Exception("No space left on device (os error 28)"),
]


@pytest.mark.parametrize("error", WRITE_ERRORS, ids=lambda e: type(e).__name__)
def test_a_failed_checkpoint_write_is_removed_and_reported(tmp_path, error):
    manager = CheckpointManager(tmp_path, keep=5)
    good = manager.save(FakeAccelerator(), 1)
    before = snapshot(tmp_path)
    with pytest.raises(
        RuntimeError, match=rf"could not write checkpoint to .*checkpoint-00000002: {re.escape(str(error))}; "
    ) as e:
        manager.save(FakeAccelerator(error=error), 2)
    assert "free disk space" in str(e.value) and "earlier checkpoints" in str(e.value) and "--resume" in str(e.value)
    assert e.value.__cause__ is error
    assert manager.checkpoints() == [good]
    assert snapshot(tmp_path) == before  # no partial folder left behind, the earlier checkpoint untouched


def test_a_checkpoint_write_that_fails_otherwise_still_cleans_up(tmp_path):
    """An error that is not a failed write (a bug, Ctrl-C) is not reworded, but the partial folder still goes."""
    manager = CheckpointManager(tmp_path, keep=5)
    with pytest.raises(KeyboardInterrupt):
        manager.save(FakeAccelerator(error=KeyboardInterrupt()), 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", WRITE_ERRORS[:2], ids=lambda e: type(e).__name__)
def test_a_failed_model_write_keeps_the_old_model(tmp_path, tiny_config, monkeypatch, error):
    import transformers.modeling_utils

    target = tmp_path / "model"
    old = VaswaniForConditionalGeneration(tiny_config())
    save_model_dir(old, target)
    before = snapshot(tmp_path)

    def full_disk(*args, **kwargs):
        raise error

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full_disk)
    with pytest.raises(RuntimeError, match=rf"could not write the model to .*model: {re.escape(str(error))}; ") as e:
        save_model_dir(VaswaniForConditionalGeneration(tiny_config()), target)
    assert "free disk space" in str(e.value) and "intact" in str(e.value)
    assert snapshot(tmp_path) == before  # the old model as it was, no temporary folder beside it


# The same with the errors a real failed write raises: a child process whose file size limit stops the writes.
CHILD = r"""
import json, os, resource, signal, sys
from pathlib import Path

import torch
from accelerate import Accelerator

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.files import save_model_dir
from vaswani_hf.training.checkpoints import CheckpointManager, TrainingState

# Past RLIMIT_FSIZE a write fails with EFBIG, as on a full disk, once SIGXFSZ (which would kill the process) is ignored.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
root = Path(sys.argv[1])
config = VaswaniConfig(**json.loads(sys.argv[2]))
tokenizer = train_shared_bpe(["the dog sees a cat", "der Hund sieht eine Katze"] * 5, vocab_size=60)
accelerator = Accelerator(cpu=True)
model = VaswaniForConditionalGeneration(config)
optimizer = torch.optim.Adam(model.parameters())
model, optimizer = accelerator.prepare(model, optimizer)
model(input_ids=torch.tensor([[5, 6, 2]]), labels=torch.tensor([[7, 2]])).loss.backward()
optimizer.step()  # Adam's moments: optimizer.bin is larger than model.safetensors
state = TrainingState(step=1)
manager = CheckpointManager(root / "checkpoints", keep=5)
first = manager.save(accelerator, 1, model, state)
save_model_dir(accelerator.unwrap_model(model), root / "model", tokenizer=tokenizer)
weights = (first / "model.safetensors").stat().st_size
results = {}
# Each case: a limit, the save it stops, and the file it stops at. model.safetensors is written first by save_state,
# then optimizer.bin (Adam's two moments: larger); save_pretrained writes config.json first, then model.safetensors.
cases = {
    "checkpoint_torch_save": (weights + 1024, lambda: manager.save(accelerator, 2, model, state)),
    "checkpoint_safetensors": (512, lambda: manager.save(accelerator, 2, model, state)),
    "model_safetensors": (4096, lambda: save_model_dir(accelerator.unwrap_model(model), root / "model")),
    "model_open": (512, lambda: save_model_dir(accelerator.unwrap_model(model), root / "model")),
}
for case, (limit, save) in cases.items():
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        save()
        results[case] = ["saved", "", None]
    except BaseException as error:
        cause = error.__cause__
        results[case] = [type(error).__name__, str(error), type(cause).__name__ if cause else None]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(json.dumps(results))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ")
def test_real_failed_writes_are_cleaned_up_and_reported(tmp_path):
    from conftest import TINY

    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), json.dumps(TINY)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    checkpoint = tmp_path / "checkpoints" / "checkpoint-00000002"
    for case, writer in (("checkpoint_torch_save", "RuntimeError"), ("checkpoint_safetensors", "SafetensorError")):
        kind, message, cause = results[case]
        assert (kind, cause) == ("SaveError", writer), results
        assert message.startswith(f"could not write checkpoint to {checkpoint}: ") and "free disk space" in message
    for case, writer in (("model_safetensors", "SafetensorError"), ("model_open", "OSError")):
        kind, message, cause = results[case]
        assert (kind, cause) == ("SaveError", writer), results
        assert message.startswith(f"could not write the model to {tmp_path / 'model'}: ") and "intact" in message
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint-00000001"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "model"]
    VaswaniForConditionalGeneration.from_pretrained(tmp_path / "model")  # the model saved before the failures
    assert VaswaniConfig.from_pretrained(tmp_path / "model").d_model == 16
