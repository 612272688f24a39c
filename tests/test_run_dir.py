"""The run folder (vaswani_hf.run_dir): its layout, the refusal to start over a run with checkpoints, and the lock
that keeps a second run out while one trains."""

import json
import os
import subprocess
import sys

import pytest

from vaswani_hf.run_dir import RunDir, RunDirError


def test_the_layout_is_the_documented_one(tmp_path):
    run = RunDir(tmp_path)
    assert run.checkpoints == tmp_path / "checkpoints" and run.model == tmp_path / "model"
    assert run.tokenizer_source == tmp_path / "tokenizer" / "source.json"
    assert run.eval("test_help") == tmp_path / "eval" / "test_help"
    import vaswani_hf.run_dir as module

    for path in (run.run_config, run.corpus_record, run.model_config, run.train_summary, run.results, run.lock_file):
        assert f"  {path.name}" in module.__doc__, path.name


def test_a_new_run_over_checkpoints_is_refused_unless_resumed_and_a_resume_needs_one(tmp_path):
    run = RunDir(tmp_path)
    run.check_start(resume=False)  # nothing there yet
    with pytest.raises(RunDirError, match="--resume: .* holds no checkpoint to resume from"):
        run.check_start(resume=True)
    (run.checkpoints / "checkpoint-00000010").mkdir(parents=True)
    with pytest.raises(RunDirError, match="already holds checkpoints: pass --resume"):
        run.check_start(resume=False)
    run.check_start(resume=True)


# Holds the lock of the folder argv[1] until its standard input closes, then releases it as a finished run does.
HOLD = """
import sys
from vaswani_hf.run_dir import RunDir
lock = RunDir(sys.argv[1]).lock(log=lambda message: print(message, flush=True))
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            RunDirError, match=rf"in use by another run \(pid {holder.pid} on .*\).*another output_dir"
        ):
            RunDir(tmp_path).lock()
    finally:
        holder.communicate("", timeout=60)
    lock = RunDir(tmp_path).lock(log=pytest.fail)  # released by a run that ended well: nothing to take over
    lock.release()


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_message(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # the dead owner's record stays
    said = []
    lock = RunDir(tmp_path).lock(log=said.append)
    assert said == [f"taking over the lock of {tmp_path}, left by a run that has ended " + said[0].split("ended ")[1]]
    assert f"pid {holder.pid}" in said[0]
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
