"""Shared fixtures: tiny configurations that run in milliseconds on a CPU, and a Python without this package."""

import os
import subprocess
import sys

import pytest
import torch

from vaswani_hf import VaswaniConfig

TINY = dict(
    vocab_size=64,
    d_model=16,
    d_ff=32,
    num_heads=2,
    encoder_layers=2,
    decoder_layers=2,
    dropout=0.0,
    max_position_embeddings=32,
)


class FakeAccelerator:
    """What CheckpointManager needs of an Accelerator in one process; `error` is raised after the weights are
    written, as a full disk fails a write half-way through save_state."""

    is_main_process = True
    num_processes = 1

    def __init__(self, error=None):
        self.error = error

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        from safetensors.torch import save_file

        save_file({"w": torch.ones(2)}, os.path.join(directory, "model.safetensors"))
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two, and much faster on a busy machine: a module marked with
    `pytestmark = pytest.mark.usefixtures("one_thread")` runs on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config():
    """Factory: `tiny_config(**overrides)` gives a fresh tiny VaswaniConfig (dropout 0, 2+2 layers, d_model 16)."""

    def make(**overrides) -> VaswaniConfig:
        return VaswaniConfig(**{**TINY, **overrides})

    return make


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A word-for-word English-German toy corpus (`train.jsonl`) and a BPE tokenizer trained on it, for training runs
    (`train_runs.py`)."""
    from train_runs import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def trained_toy_model():
    """The tiny model trained on `toy_task` (reverse 3 to 8 words), once per session; copy it before changing it."""
    from toy_task import train_toy_model

    return train_toy_model()


@pytest.fixture
def run_without_package(tmp_path):
    """Runs Python code in a fresh process where `vaswani_hf` cannot be imported, as for a user who only has
    transformers; offline, with its own remote-code module cache. Returns the finished process."""

    def run(code: str, *args: str) -> subprocess.CompletedProcess:
        script = tmp_path / "without_package.py"
        script.write_text('import sys\nsys.modules["vaswani_hf"] = None\n' + code)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
        return subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )

    return run
