"""Faults of several processes, end to end: `vaswani-train` launched on two processes as the main job launches it,
then killed with SIGKILL at random points, while it writes a checkpoint, while it averages, one process alone, or with
one process unable to write its part of a checkpoint; and FSDP2 validation on two processes. Each run resumed with
`--resume` must end with the weights of a run that was never interrupted, bit for bit.

Faults are injected from outside the package: a `sitecustomize.py` on the PYTHONPATH of the launch, loaded by every
process at start-up, slows or breaks the writers (safetensors and `torch.save`) of the process of a given rank.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_runs import ROOT, TRAIN, TWO_PROCESSES, overrides, train, wait_for, weights

pytestmark = pytest.mark.slow

# 120 updates, a checkpoint every 20, the last 5 averaged; dropout on, so that the RNG states must be restored too.
STEPS = ["train.max_steps=120", "checkpoint.every_steps=20", "model.dropout=0.1"]
LAST = 120

FAULTS = r"""
import os
import time

rank = os.environ.get("RANK")
if rank is not None and os.environ.get("FAULTS_DIR"):
    import safetensors.torch
    import torch

    faults = os.environ["FAULTS_DIR"]
    with open(os.path.join(faults, f"pid-{rank}.tmp"), "w") as file:
        file.write(str(os.getpid()))
    os.replace(os.path.join(faults, f"pid-{rank}.tmp"), os.path.join(faults, f"pid-{rank}"))
    slow = float(os.environ.get("FAULTS_SLOW_WRITES", "0"))
    fail_rank, _, fail_path = os.environ.get("FAULTS_FAIL_WRITE", "").partition(":")

    def faulty(write, path_argument):
        def wrapped(*args, **kwargs):
            path = str(args[path_argument] if len(args) > path_argument else kwargs.get("f", kwargs.get("filename")))
            if fail_path and rank == fail_rank and fail_path in path:
                # What torch.save raises on a full disk.
                raise RuntimeError(f"PytorchStreamWriter failed writing file {path}: file write failed")
            time.sleep(slow)  # a slow disk: the windows in which a kill lands during a write grow
            return write(*args, **kwargs)

        return wrapped

    # Before Accelerate and transformers import them: they bind safetensors' save_file by name at import.
    safetensors.torch.save_file = faulty(safetensors.torch.save_file, 1)
    torch.save = faulty(torch.save, 1)
"""


def launch(corpus, out: Path, faults: Path, **fault_env) -> subprocess.Popen:
    """Starts a two-process run whose processes load FAULTS; each writes its pid to `faults/pid-<rank>`."""
    (faults / "site").mkdir(parents=True, exist_ok=True)
    (faults / "site" / "sitecustomize.py").write_text(FAULTS)
    env = {"PYTHONPATH": str(faults / "site"), "FAULTS_DIR": str(faults), **fault_env}
    return train(corpus, out, *STEPS, launcher=TWO_PROCESSES, wait=False, env=env, start_new_session=True)


def resume(corpus, out: Path) -> str:
    done = train(corpus, out, *STEPS, launcher=TWO_PROCESSES, resume=True)
    return done.stdout + done.stderr


def assert_same_run(resumed: Path, reference: Path) -> None:
    """The final checkpoint and the averaged model equal the uninterrupted run's bit for bit, and nothing partial is
    left behind."""
    for name, expected in weights(reference, LAST).items():
        torch.testing.assert_close(weights(resumed, LAST)[name], expected, rtol=0, atol=0, msg=name)
    averaged, expected = (load_file(run / "model" / "model.safetensors") for run in (resumed, reference))
    assert averaged.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(averaged[name], expected[name], rtol=0, atol=0, msg=name)
    assert json.loads((resumed / "train_summary.json").read_text())["updates"] == LAST
    leftovers = [p.name for folder in (resumed, resumed / "checkpoints") for p in folder.iterdir()]
    assert not [name for name in leftovers if name.startswith((".tmp-", ".old-"))], leftovers


def pid_of(faults: Path, rank: int, process: subprocess.Popen) -> int:
    wait_for(faults / f"pid-{rank}", process)
    return int((faults / f"pid-{rank}").read_text())


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """The same two-process run, never interrupted."""
    out = tmp_path_factory.mktemp("reference")
    train(corpus, out, *STEPS, launcher=TWO_PROCESSES)
    return out


def first_checkpoint(out: Path) -> Path:
    return out / "checkpoints" / "checkpoint-00000020"


# Each case: how long after the first checkpoint to wait (or what to wait for), and whom to kill.
KILLS = {
    "random point 1": (random.Random(1).uniform(0, 4), "all"),
    "random point 2": (random.Random(2).uniform(0, 4), "all"),
    "during a checkpoint write": ("checkpoints/.tmp-checkpoint-00000060", "all"),
    "during the averaging": (".tmp-model-*", "all"),
    "one process alone": (random.Random(3).uniform(0, 4), "rank 1"),
}


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_trains(corpus, tmp_path):
    """Two runs into one output folder would mix their checkpoints: the second is refused at once, naming the first,
    which trains on unharmed (stopped here by SIGTERM, it checkpoints and exits as usual)."""
    out = tmp_path / "run"
    budget = ["train.max_steps=100000", "checkpoint.every_steps=20"]
    first = train(corpus, out, *budget, launcher=TWO_PROCESSES, wait=False, start_new_session=True)
    try:
        wait_for(first_checkpoint(out), first)
        second = subprocess.run(
            [sys.executable, *TRAIN, "--config", "base", "--resume", *overrides(corpus, out, *budget)],
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode != 0, second.stderr[-2000:]
        assert f"error: {out} is in use by another run (pid " in second.stderr, second.stderr[-2000:]
        assert first.poll() is None, "the first run must still be training"
        os.killpg(first.pid, signal.SIGTERM)
        output, _ = first.communicate(timeout=300)
        assert "stopped by signal" in output, output[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)


def test_a_two_process_run_that_diverges_stops_both_processes_with_finite_checkpoints(corpus, tmp_path):
    """Divergence found on the processes together (a max over them at every update): both stop at the same update,
    the launch exits non-zero with the message, and every checkpoint kept holds finite weights."""
    out = tmp_path / "run"
    extra = ["train.lr_scale=1e30", "train.max_steps=40", "checkpoint.every_steps=1", "checkpoint.keep=50"]
    process = train(corpus, out, *extra, launcher=TWO_PROCESSES, wait=False)
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0
    assert output.count("error: training diverged at update ") >= 1, output[-3000:]
    assert not (out / "model").exists()
    for checkpoint in (out / "checkpoints").iterdir():
        tensors = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in tensors.values()), checkpoint


@pytest.mark.parametrize("case", list(KILLS))
def test_a_two_process_run_killed_anywhere_resumes_to_the_same_weights(corpus, reference, tmp_path, case):
    when, whom = KILLS[case]
    out, faults = tmp_path / "run", tmp_path / "faults"
    process = launch(corpus, out, faults, FAULTS_SLOW_WRITES="0.3")
    ranks = [pid_of(faults, rank, process) for rank in (0, 1)]
    wait_for(first_checkpoint(out), process)
    if isinstance(when, float):
        time.sleep(when)
    else:
        deadline = time.monotonic() + 120
        while not list(out.glob(when)):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, f"{when} never appeared"
            time.sleep(0.005)
    assert not (out / "train_summary.json").exists(), "the run finished before it was killed"
    try:
        if whom == "all":
            kill_all(process, ranks)
        else:
            os.kill(ranks[1], signal.SIGKILL)
        # Killed alone, the process of rank 1 takes the launch down with it: the other does not wait for it forever.
        # (The output pipe closes when every process of the launch has exited.)
        output, _ = process.communicate(timeout=120)
        assert process.returncode != 0, output[-3000:]
    finally:
        kill_all(process, ranks)
    assert not (out / "train_summary.json").exists(), "the run went on after the kill"

    resume(corpus, out)
    assert_same_run(out, reference)


def kill_all(process: subprocess.Popen, ranks=()) -> None:
    """SIGKILL to the launcher and to the processes it started, which torch's launcher puts in sessions of their own;
    also run after a failed assertion, so that nothing of the launch is left running."""
    for pid in ranks:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_process_that_cannot_write_its_part_of_a_checkpoint_stops_them_all_cleanly(corpus, reference, tmp_path):
    """The process of rank 1 fails to write its RNG state into checkpoint 60 (as on a full disk of its own): every
    process stops with the reason instead of waiting for the others, the partial checkpoint is removed, the earlier
    ones are intact, and `--resume` after it ends as the uninterrupted run."""
    out, faults = tmp_path / "run", tmp_path / "faults"
    process = launch(corpus, out, faults, FAULTS_FAIL_WRITE="1:checkpoint-00000060")
    ranks = [pid_of(faults, rank, process) for rank in (0, 1)]
    try:
        output, _ = process.communicate(timeout=300)
    finally:
        kill_all(process, ranks)
    assert process.returncode != 0
    # Each process says why it stopped: rank 1 its own failed write, rank 0 that another process failed.
    assert "could not write checkpoint" in output and "file write failed" in output, output[-3000:]
    assert "another process could not write its part of it" in output, output[-3000:]
    assert 'train.py", line' not in output, output[-3000:]  # a message, not a traceback of ours
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-00000020", "checkpoint-00000040"]

    resume(corpus, out)
    assert_same_run(out, reference)


# FSDP2 on this CPU: Accelerate shards only on accelerators (its FSDP mode needs MULTI_GPU or the like), so the child
# shards the model itself as Accelerate does with scripts/accelerate/fsdp.yaml (each layer class it names a unit, then
# the root), then trains and validates with the package's `validate` on two processes over gloo.
FSDP_CHILD = r"""
import json, random, sys
from contextlib import nullcontext
from datetime import timedelta

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import InitProcessGroupKwargs
from datasets import Dataset
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.training.run_config import RunConfig
from vaswani_hf.data.batching import collate, length_batches, token_batches
from vaswani_hf.data.parallel import tokenize_pairs
from vaswani_hf.training.loss import training_loss
from vaswani_hf.training.validation import is_sharded, validate

# A short collective timeout: a mismatch fails in seconds instead of half an hour.
accelerator = Accelerator(cpu=True, kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=60))])
fsdp = load_config_from_file(sys.argv[1]).fsdp_config
words = "house tree car dog cat red blue big small the a sees has is".split()
rng = random.Random(0)
pairs = []
for _ in range(60):
    en = [rng.choice(words) for _ in range(rng.randint(2, 8))]
    pairs.append({"en": " ".join(en), "de": " ".join(w.upper() for w in en)})
tokenizer = train_shared_bpe([t for p in pairs for t in p.values()], vocab_size=80)
dataset = Dataset.from_list([{"translation": p} for p in pairs])
train_set, _ = tokenize_pairs(dataset, tokenizer, src_lang="en", tgt_lang="de", max_length=64)
valid_pairs = dataset.select(range(9))
valid_set, _ = tokenize_pairs(valid_pairs, tokenizer, src_lang="en", tgt_lang="de", max_length=64)
cfg = RunConfig.load("base", ["eval.max_tokens=40", "data.bleu_sentences=6", "eval.num_beams=2"])
# An odd number of loss batches (unequal shares for the two processes), several generate() calls for BLEU.
loss_batches = token_batches(
    [len(x) for x in valid_set["input_ids"]], [len(x) for x in valid_set["labels"]], 40, rng=np.random.default_rng(0)
)
assert len(loss_batches) % 2 == 1, len(loss_batches)
assert len(length_batches([len(x) for x in valid_set["input_ids"][:6]], 40)) >= 2
torch.manual_seed(0)
config = VaswaniConfig(
    vocab_size=len(tokenizer), d_model=16, d_ff=32, num_heads=2, encoder_layers=1, decoder_layers=2, dropout=0.0,
    pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    decoder_start_token_id=tokenizer.bos_token_id,
)
model = VaswaniForConditionalGeneration(config)
units = fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")
for module in model.modules():
    if type(module).__name__ in units:
        fully_shard(module, reshard_after_forward=fsdp["fsdp_reshard_after_forward"])
fully_shard(model, reshard_after_forward=fsdp["fsdp_reshard_after_forward"])
assert is_sharded(model)


class OneProcess:
    process_index, num_processes, is_main_process, device = 0, 1, True, torch.device("cpu")
    reduce = staticmethod(lambda tensor, op: tensor)
    autocast = staticmethod(nullcontext)
    wait_for_everyone = staticmethod(lambda: None)


optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
results = []
for step in range(4):
    model.train()
    first = step * 8 + accelerator.process_index * 4
    loss = training_loss(model, collate(train_set[list(range(first, first + 4))], tokenizer.pad_token_id), 0.1)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    if step % 2 == 1:
        sharded = validate(model, tokenizer, valid_set, valid_pairs, cfg, accelerator)
        # The same validation in this process alone, on the gathered weights.
        plain = VaswaniForConditionalGeneration(config)
        plain.load_state_dict(get_model_state_dict(model, options=StateDictOptions(full_state_dict=True)))
        results.append({"sharded": sharded, "plain": validate(plain, tokenizer, valid_set, valid_pairs, cfg, OneProcess())})
print("RESULTS", json.dumps(results), flush=True)
"""


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed")
def test_fsdp2_trains_and_validates_on_two_processes(tmp_path):
    """Each forward of an FSDP2 model all-gathers on every process: validation with unequal shares of batches, or
    decoding on the main process alone, would wait forever. Both processes must get the metrics of the unsharded
    model, and training must go on after validation."""
    script = tmp_path / "fsdp_child.py"
    script.write_text(FSDP_CHILD)
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    args.append(str(ROOT / "scripts" / "accelerate" / "fsdp.yaml"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    lines = [json.loads(line.removeprefix("RESULTS ")) for line in output.splitlines() if line.startswith("RESULTS ")]
    assert len(lines) == 2 and lines[0] == lines[1]  # both processes hold the same metrics
    for validation in lines[0]:
        assert set(validation["sharded"]) >= {"valid/loss", "valid/nll", "valid/bleu", "valid/chrf"}
        for key, value in validation["plain"].items():
            assert validation["sharded"][key] == pytest.approx(value, rel=1e-6), key
    assert lines[0][0]["sharded"]["valid/loss"] != lines[0][1]["sharded"]["valid/loss"]  # it trained in between
