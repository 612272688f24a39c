"""Runs of `vaswani-train` in their own processes for the tests of training end to end: a word-for-word toy corpus
(`conftest.py` makes it once per session as the `corpus` fixture), the run settings of a tiny model, and launchers for
one and two processes."""

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
# The training command, as `python -m` runs it (and `accelerate launch -m`).
TRAIN = ("-m", "vaswani_hf.cli.train")
WORDS = dict(
    zip(
        "house tree car dog cat red blue big small the a sees has is".split(),
        "Haus Baum Auto Hund Katze rot blau groß klein das ein sieht hat ist".split(),
        strict=True,
    )
)
# Two processes on this CPU over gloo, as the main job launches them.
TWO_PROCESSES = (
    sys.executable, "-m", "accelerate.commands.launch", "--config_file",
    str(ROOT / "scripts" / "accelerate" / "cpu-2proc.yaml"), "--main_process_port", "0",
)  # fmt: skip


# A tiny model and 4 updates with a checkpoint every 2, for the commands that train with a preset's other settings
# (the main job, the studies, the docs' commands): a run of seconds with a curve of two points.
TINY_RUN = (
    "model.d_model=16", "model.d_ff=32", "model.num_heads=2", "model.encoder_layers=1", "model.decoder_layers=1",
    "data.vocab_size=150", "data.bleu_sentences=4", "train.max_tokens=128", "train.update_tokens=100",
    "train.warmup_steps=10", "train.mixed_precision=no", "train.max_minutes=null", "train.max_steps=4",
    "train.log_every=2", "eval.every_steps=null", "checkpoint.every_minutes=null", "checkpoint.every_steps=2",
    "checkpoint.average_last=2",
)  # fmt: skip


def make_corpus(root: Path) -> Path:
    """A word-for-word English-German toy corpus in `root/train.jsonl` and a BPE tokenizer trained on it."""
    from vaswani_hf import train_shared_bpe

    rng = random.Random(0)
    rows = []
    for _ in range(400):
        en = [rng.choice(list(WORDS)) for _ in range(rng.randint(2, 10))]
        rows.append({"en": " ".join(en), "de": " ".join(WORDS[w] for w in en)})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenizer = train_shared_bpe([t for r in rows for t in r.values()], vocab_size=120)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def overrides(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"output_dir={out}",
        f"data.corpus={corpus / 'train.jsonl'}",
        f"data.tokenizer={corpus / 'tokenizer'}",
        "model.d_model=16",
        "model.d_ff=32",
        "model.num_heads=2",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "train.max_tokens=128",
        "train.update_tokens=200",
        "train.warmup_steps=10",
        "train.lr_scale=0.5",
        "train.log_every=10",
        "checkpoint.every_minutes=null",
        "eval.every_steps=null",
        *extra,
    ]


def train(corpus, out, *extra, resume=False, launcher=(sys.executable,), wait=True, env=None, **popen):
    """Runs vaswani-train to the end (asserting success) or, with `wait=False`, returns the running process."""
    args = [
        *launcher,
        *TRAIN,
        "--config",
        "base",
        *(["--resume"] if resume else []),
        *overrides(corpus, out, *extra),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    if not wait:
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"checkpoint-{step:08d}" / "model.safetensors")


def wait_for(path: Path, process: subprocess.Popen, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
