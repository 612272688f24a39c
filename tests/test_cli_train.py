"""`vaswani-train` end to end on a tiny corpus: a killed or signalled run resumes to the same weights as an
uninterrupted one, two processes make the same update as one, and bad input fails clearly."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_runs import TRAIN, TWO_PROCESSES, WORDS, overrides, train, wait_for, weights

from vaswani_hf.data.parallel import tokenize_pairs
from vaswani_hf.training.corpus import prepare_corpus
from vaswani_hf.training.run_config import RunConfig
from vaswani_hf.training.updates import plan_epoch

STEPS = ["train.max_steps=300", "checkpoint.every_steps=50", "model.dropout=0.1"]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    train(corpus, out, *STEPS)
    return out


def test_uninterrupted_run_writes_a_loadable_averaged_model(uninterrupted):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    summary = json.loads((uninterrupted / "train_summary.json").read_text())
    assert summary["updates"] == 300
    # The last five of the checkpoints every 50 updates (§6.1).
    assert summary["averaged_checkpoints"] == [f"checkpoint-{s:08d}" for s in (100, 150, 200, 250, 300)]
    # The precision the run trained in, and why: on a CPU with `auto`, the probe at the model's width.
    chosen = json.loads((uninterrupted / "precision.json").read_text())
    assert chosen["mixed_precision"] == summary["mixed_precision"] and chosen["why"]
    if chosen["setting"] == "auto" and not torch.accelerator.is_available():
        assert chosen["probe"]["block"]["d_model"] == 16 and chosen["probe"]["fp32_ms"] > 0
    model = AutoModelForSeq2SeqLM.from_pretrained(uninterrupted / "model")
    tokenizer = AutoTokenizer.from_pretrained(uninterrupted / "model")
    out = model.generate(**tokenizer(["the dog"], return_tensors="pt"), num_beams=1)
    assert out.shape[0] == 1
    assert (uninterrupted / "run_config.yaml").exists() and any((uninterrupted / "train").iterdir())


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_and_resumed_run_ends_with_the_same_weights(corpus, uninterrupted, tmp_path, how):
    process = train(corpus, tmp_path, *STEPS, wait=False)
    wait_for(tmp_path / "checkpoints" / "checkpoint-00000050", process)
    process.send_signal(how)
    output, _ = process.communicate(timeout=120)
    if how == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        # A clean exit with a checkpoint at the update where the signal arrived.
        assert process.returncode == 0, output
        assert "stopped by signal" in output
    saved = [int(p.name.split("-")[1]) for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("check")]
    assert max(saved) < 300, "the run finished before it was interrupted"

    train(corpus, tmp_path, *STEPS, resume=True)
    resumed, reference = weights(tmp_path, 300), weights(uninterrupted, 300)
    assert resumed.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("damage", ["truncated weights", "missing random state", "truncated optimizer"])
def test_a_damaged_last_checkpoint_is_set_aside_and_the_run_resumes_exactly(corpus, uninterrupted, tmp_path, damage):
    """A last checkpoint cut short (a full disk, a copy interrupted) or missing a process's random state: --resume
    says so, sets it aside, and continues from the newest intact one to the same weights as an uninterrupted run."""
    train(corpus, tmp_path, *STEPS, "train.max_steps=150")
    last = tmp_path / "checkpoints" / "checkpoint-00000150"
    if damage == "missing random state":
        (last / "random_states_0.pkl").unlink()
    else:
        path = last / ("model.safetensors" if damage == "truncated weights" else "optimizer.bin")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    done = train(corpus, tmp_path, *STEPS, resume=True)
    said = done.stdout + done.stderr
    assert "checkpoint checkpoint-00000150 is damaged (" in said and "resuming from checkpoint-00000100" in said, said
    assert (tmp_path / "checkpoints" / ".damaged-checkpoint-00000150").is_dir()
    resumed, reference = weights(tmp_path, 300), weights(uninterrupted, 300)
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0, msg=name)


def test_two_processes_make_the_same_update_as_one(corpus, tmp_path):
    # Pick an update size whose first update splits evenly across two processes, so both runs see the same
    # global batch; the test then compares the weights after that update.
    data = RunConfig.load("base", overrides(corpus, tmp_path)).data
    tokenizer_dataset = prepare_corpus(data)[0]["train"]
    from transformers import AutoTokenizer

    tokenized, _ = tokenize_pairs(
        tokenizer_dataset, AutoTokenizer.from_pretrained(corpus / "tokenizer"), src_lang="en", tgt_lang="de",
        max_length=256,
    )  # fmt: skip
    src = [len(x) for x in tokenized["input_ids"]]
    tgt = [len(x) for x in tokenized["labels"]]
    for update_tokens in range(300, 2000, 20):
        one, two = (
            plan_epoch(src, tgt, max_tokens=128, update_tokens=update_tokens, num_processes=n, seed=1)[0]
            for n in (1, 2)
        )
        if one == two:
            break
    assert one == two and len(one.micro_batches) >= 4

    # Dropout off: the two runs draw their masks in different orders.
    extra = [
        "train.max_steps=1",
        f"train.update_tokens={update_tokens}",
        "checkpoint.average_last=1",
        "model.dropout=0",
    ]
    train(corpus, tmp_path / "one", *extra)
    done = train(corpus, tmp_path / "two", *extra, launcher=TWO_PROCESSES)
    assert "2 process(es), MULTI_CPU" in done.stdout + done.stderr
    # Adam's first moment after one update is 0.1 x the update's gradient: the two runs must agree on it. (Their
    # weights can differ where a gradient is zero up to rounding, e.g. the key biases, which softmax ignores: Adam's
    # first step turns that noise into a full-size step of either sign.)
    single, double = (first_moments(tmp_path / run) for run in ("one", "two"))
    assert single.keys() == double.keys()
    for index in single:
        torch.testing.assert_close(double[index], single[index], rtol=1e-4, atol=1e-9)
    assert max(m.abs().max() for m in single.values()) > 1e-4


def first_moments(out: Path) -> dict[int, torch.Tensor]:
    optimizer = torch.load(out / "checkpoints" / "checkpoint-00000001" / "optimizer.bin", weights_only=True)
    return {index: state["exp_avg"] for index, state in optimizer["state"].items()}


def run_train(args, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *TRAIN, *args], env=env, capture_output=True, text=True, timeout=300)


def test_typo_in_an_override_is_an_error(corpus, tmp_path):
    done = run_train(["--config", "base", *overrides(corpus, tmp_path), "train.lr_scal=2"], tmp_path)
    assert done.returncode != 0 and "Did you mean 'train.lr_scale'" in done.stderr


def test_a_bad_setting_is_one_line_without_a_traceback(corpus, tmp_path):
    done = run_train(["--config", "base", *overrides(corpus, tmp_path), "train.max_minutes=.nan"], tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "error: train.max_minutes must be a finite number, got nan."


def test_a_diverging_run_stops_keeps_finite_checkpoints_and_saves_no_model(corpus, tmp_path):
    """A learning rate 1e30 times the paper's: the loss is NaN within a few updates. The run stops with a message that
    names the update and what to try, exits non-zero, and leaves only checkpoints of finite weights (no averaged
    model of NaN)."""
    out = tmp_path / "run"
    extra = ["train.lr_scale=1e30", "train.max_steps=40", "checkpoint.every_steps=1", "checkpoint.keep=50"]
    done = run_train(["--config", "base", *overrides(corpus, out, *extra)], tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: training diverged at update ") and "train.lr_scale" in message
    diverged_at = int(message.removeprefix("error: training diverged at update ").split(":")[0])
    assert diverged_at < 10, message
    assert not (out / "model").exists() and not (out / "train_summary.json").exists()
    kept = sorted((out / "checkpoints").iterdir())
    assert len(kept) == diverged_at - 1
    for checkpoint in kept:
        tensors = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(t).all() for t in tensors.values()), checkpoint


def test_misaligned_files_and_foreign_tokenizer_fail_clearly(corpus, tmp_path):
    (tmp_path / "bad.en").write_text("a\nb\nc\n")
    (tmp_path / "bad.de").write_text("x\ny\n")
    done = run_train(["--config", "base", *overrides(corpus, tmp_path), f"data.corpus={tmp_path / 'bad'}"], tmp_path)
    assert done.returncode != 0 and "3" in done.stderr and "2" in done.stderr and "bad.de" in done.stderr


# Loaded at start-up by every process of the launch below (through PYTHONPATH): the process of rank 1 sees its update
# times three times as long, so that it alone reaches the time budget first, as a slower process would.
FAST_CLOCK_ON_RANK_1 = """
import os, time
if os.environ.get("RANK") == "1":
    _perf_counter = time.perf_counter
    time.perf_counter = lambda: 3 * _perf_counter()
"""


def test_two_processes_stop_together_when_their_clocks_disagree(corpus, tmp_path):
    """At a time budget each process measures its own update time: one of them alone may find it spent. Both must
    still validate, checkpoint and stop at the same update, and the averaged model must be written."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(FAST_CLOCK_ON_RANK_1)
    (tmp_path / "valid.jsonl").write_text(
        "".join(json.dumps({"en": en, "de": WORDS[en]}) + "\n" for en in list(WORDS)[:6])
    )
    extra = [
        "train.max_steps=null",
        "train.max_minutes=0.05",
        f"data.validation={tmp_path / 'valid.jsonl'}",
        "data.bleu_sentences=0",
        "eval.every_steps=100000",  # validation only at the end, where the processes disagree
    ]
    args = [*TWO_PROCESSES, *TRAIN, "--config", "base", *overrides(corpus, tmp_path / "run"), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "2 process(es), MULTI_CPU" in output and "valid/loss" in output
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("case", ["no pair fits max_length", "fewer micro-batches than processes"])
def test_nothing_to_train_on_is_an_error_not_an_endless_loop(corpus, tmp_path, case):
    """With every pair dropped (data.max_length=1), or a corpus of fewer micro-batches than processes, an epoch plan is
    empty: the run must stop with an error, not loop over empty epochs."""
    if case == "no pair fits max_length":
        extra, launcher = ["data.max_length=1"], (sys.executable,)
    else:
        (tmp_path / "tiny.jsonl").write_text(json.dumps({"en": "the house", "de": "das Haus"}) + "\n")
        extra = [f"data.corpus={tmp_path / 'tiny.jsonl'}"]
        launcher = TWO_PROCESSES
    args = [*launcher, *TRAIN, "--config", "base", *overrides(corpus, tmp_path / "run"), *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Nothing to train on" in done.stdout + done.stderr


def test_resume_refuses_another_model_configuration(corpus, uninterrupted, tmp_path):
    shutil.copytree(uninterrupted, tmp_path / "run")
    done = run_train(
        ["--config", "base", "--resume", *overrides(corpus, tmp_path / "run"), *STEPS, "model.d_ff=64"], tmp_path
    )
    assert done.returncode != 0 and "model.d_ff: 32 then, 64 now" in done.stderr
    done = run_train(["--config", "base", *overrides(corpus, tmp_path / "run"), *STEPS], tmp_path)
    assert done.returncode != 0 and "--resume" in done.stderr


def test_a_run_killed_before_its_first_checkpoint_is_refused_a_resume_and_starts_again(corpus, tmp_path):
    """A kill during the first write of model_config leaves only a temporary folder beside it: --resume says what to
    do in one line, and a new start removes the leftover and writes the configuration whole."""
    out = tmp_path / "run"
    leftover = out / ".tmp-model_config-x1y2"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text('{"model_type": "vas')
    done = run_train(["--config", "base", "--resume", *overrides(corpus, out), *STEPS], tmp_path)
    assert done.returncode != 0 and "holds no checkpoint to resume from" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    train(corpus, out, "train.max_steps=5", "checkpoint.every_steps=5")
    assert not leftover.exists()
    assert json.loads((out / "model_config" / "config.json").read_text())["model_type"] == "vaswani"


def test_average_checkpoints_script(uninterrupted, tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    out = tmp_path / "avg"
    done = subprocess.run(
        [sys.executable, "-m", "vaswani_hf.cli.average", str(uninterrupted), "--last", "2", "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    first, second = weights(uninterrupted, 250), weights(uninterrupted, 300)
    averaged = AutoModelForSeq2SeqLM.from_pretrained(out).state_dict()
    for name in first:
        torch.testing.assert_close(averaged[name], (first[name] + second[name]) / 2)
    assert (out / "tokenizer.json").exists()


@pytest.mark.parametrize("change", ["train.seed=2", "train.max_tokens=256", "data.max_length=64"])
def test_resume_refuses_settings_that_change_the_plan(corpus, uninterrupted, tmp_path, change):
    """The saved position (epoch, update in epoch) indexes a plan made from the seed, the batch sizes and the data: on
    another plan it would repeat or skip data silently. The refusal names the setting and leaves the run as it was."""
    shutil.copytree(uninterrupted, tmp_path / "run")
    saved_config = (tmp_path / "run" / "run_config.yaml").read_text()
    done = run_train(["--config", "base", "--resume", *overrides(corpus, tmp_path / "run"), *STEPS, change], tmp_path)
    key, _, value = change.partition("=")
    assert done.returncode != 0 and f"{key}:" in done.stderr and f"{value} now" in done.stderr, done.stderr
    assert (tmp_path / "run" / "run_config.yaml").read_text() == saved_config


def test_resuming_a_finished_run_changes_nothing_and_a_longer_budget_trains_on(corpus, uninterrupted, tmp_path):
    shutil.copytree(uninterrupted, tmp_path / "run")
    model_file = tmp_path / "run" / "model" / "model.safetensors"
    before = model_file.read_bytes()
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    done = train(corpus, tmp_path / "run", *STEPS, resume=True)
    assert "nothing to do" in done.stdout + done.stderr
    assert model_file.read_bytes() == before
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text()) == summary
    # A longer budget is a change a resumed run may make: it trains the extra updates and averages again.
    config_file = tmp_path / "run" / "model_config" / "config.json"
    config_before = os.stat(config_file)
    train(corpus, tmp_path / "run", *STEPS, "train.max_steps=310", "train.log_every=7", resume=True)
    assert json.loads((tmp_path / "run" / "train_summary.json").read_text())["updates"] == 310
    # The model configuration it compared equal is left as it is: another process may be reading it meanwhile.
    config_after = os.stat(config_file)
    assert (config_after.st_ino, config_after.st_mtime_ns) == (config_before.st_ino, config_before.st_mtime_ns)
    # Its first log line, at update 301, is the mean loss of the one update since the resume, not of log_every
    # updates: it is near the loss logged before the resume, not a seventh of it.
    losses = logged_losses(tmp_path / "run" / "train")
    assert sorted(losses) == [*range(10, 301, 10), 301, 308], sorted(losses)
    assert 0.6 < losses[301] / losses[300] < 1.6, (losses[300], losses[301])


def logged_losses(log_dir: Path) -> dict[int, float]:
    """train/loss by update from the TensorBoard event files of a run's log folder (what `tensorboard` shows)."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    events = EventMultiplexer().AddRunsFromDirectory(str(log_dir))
    events.Reload()
    runs = [run for run, tags in events.Runs().items() if "train/loss" in tags["scalars"]]
    return {event.step: event.value for run in runs for event in events.Scalars(run, "train/loss")}


def test_checkpoints_keep_the_training_state_as_json_and_nothing_loads_a_pickle_with_code(uninterrupted, tmp_path):
    """--resume reads the data position from JSON; Accelerate's RNG states load with weights_only=True. A checkpoint
    from before the JSON keeps its state in a pickle, which is read with weights_only=True: one that carries code is
    refused and the code never runs."""
    from vaswani_hf.training.checkpoints import TRAINING_STATE_FILE, checkpoint_state

    checkpoint = uninterrupted / "checkpoints" / "checkpoint-00000300"
    assert not list(checkpoint.glob("custom_checkpoint_*.pkl"))
    state = json.loads((checkpoint / TRAINING_STATE_FILE).read_text())
    assert state["step"] == 300 and checkpoint_state(checkpoint) == state

    legacy = tmp_path / "checkpoint-00000001"
    legacy.mkdir()
    torch.save(
        {"step": 1, "epoch": 0, "update_in_epoch": 1, "target_tokens": 9, "train_seconds": 0.5},
        legacy / "custom_checkpoint_0.pkl",
    )
    assert checkpoint_state(legacy)["target_tokens"] == 9
    ran = tmp_path / "ran"
    torch.save(CodeOnLoad(str(ran)), legacy / "custom_checkpoint_0.pkl")
    with pytest.raises(Exception, match="Weights only load failed"):
        checkpoint_state(legacy)
    assert not ran.exists()


class CodeOnLoad:
    """Unpickling this creates a file: the code a malicious checkpoint could carry."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def resumed_equals_uninterrupted(corpus, tmp_path, overrides, evidence: str) -> dict[str, torch.Tensor]:
    """Trains 30 updates in one run and in two (20, then resumed to 30), asserts that both end with identical weights,
    of which some are named with `evidence`, and returns the uninterrupted run's final weights."""
    train(corpus, tmp_path / "whole", *overrides, "train.max_steps=30")
    train(corpus, tmp_path / "parts", *overrides, "train.max_steps=20")
    train(corpus, tmp_path / "parts", *overrides, "train.max_steps=30", resume=True)
    whole, parts = weights(tmp_path / "whole", 30), weights(tmp_path / "parts", 30)
    assert whole.keys() == parts.keys() and any(evidence in name for name in whole)
    for name in whole:
        torch.testing.assert_close(parts[name], whole[name], rtol=0, atol=0, msg=name)
    return whole


def test_a_marian_model_trains_through_the_same_command_and_resumes_exactly(corpus, tmp_path):
    """The recipe is the model's only through its config: `model.architecture=marian` trains transformers' own
    `MarianMTModel` with the same batching, schedule, loss, checkpoints and averaging, and a run stopped at its budget
    and resumed with a longer one ends where an uninterrupted run does."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, MarianMTModel

    marian = [
        "model.architecture=marian",
        "model.dropout=0.1",
        "checkpoint.every_steps=10",
        "checkpoint.average_last=2",
    ]
    whole = resumed_equals_uninterrupted(corpus, tmp_path, marian, "self_attn")
    assert not torch.equal(weights(tmp_path / "whole", 10)["model.shared.weight"], whole["model.shared.weight"])

    model = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "parts" / "model")
    assert isinstance(model, MarianMTModel)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "parts" / "model")
    assert model.generate(**tokenizer(["the dog"], return_tensors="pt"), max_new_tokens=5).shape[0] == 1


def test_the_recurrent_model_trains_through_the_same_command_and_resumes_exactly(corpus, tmp_path):
    """`model.architecture=rnn` trains this package's recurrent encoder-decoder with the same recipe; a run stopped at
    its budget and resumed with a longer one ends where an uninterrupted run does, dropout and clipping included."""
    from transformers import AutoModelForSeq2SeqLM

    from vaswani_hf import RNNForConditionalGeneration

    rnn = [
        # The tiny Transformer sizes of the shared overrides do not apply to a recurrent model: unset them.
        "model.d_model=", "model.d_ff=", "model.num_heads=", "model.architecture=rnn", "model.hidden_size=16",
        "model.embedding_size=8", "model.dropout=0.1", "train.clip_norm=1.0", "checkpoint.every_steps=10",
        "checkpoint.average_last=2",
    ]  # fmt: skip
    whole = resumed_equals_uninterrupted(corpus, tmp_path, rnn, "attention")
    first = weights(tmp_path / "whole", 10)
    assert not torch.equal(first["model.encoder.embed_tokens.weight"], whole["model.encoder.embed_tokens.weight"])
    assert isinstance(AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "parts" / "model"), RNNForConditionalGeneration)


def test_options_and_overrides_mix_in_any_order():
    from vaswani_hf.training.loop import parse_args

    args = parse_args(["--config", "base", "output_dir=x", "--resume", "train.max_minutes=30"])
    assert args.resume and args.config == "base" and args.overrides == ["output_dir=x", "train.max_minutes=30"]
