"""Running the training loop (`loop`, what `vaswani-train` runs) in processes of its own, as a user runs it: one
process, or several data-parallel ones through Accelerate's launcher."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

# The module `python -m` runs: the loop itself, in this layer (`tests/test_layout.py` checks the name like an import).
LOOP = "vaswani_hf.training.loop"


def train_command(processes: int, arguments: Sequence[str]) -> list[str]:
    """The command line that runs the training loop with `arguments` (those of `vaswani-train`) in `processes`
    processes.

    Several processes go through Accelerate's "multi-GPU" launcher, which is torchrun: finding no GPU, the training
    loop joins them over gloo on the CPU (`scripts/accelerate/cpu-2proc.yaml` holds the same settings for
    `accelerate launch --config_file`).
    """
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    launcher = [sys.executable]
    if processes > 1:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
                    "--num_processes", str(processes), "--mixed_precision", "no", "--dynamo_backend", "no",
                    "--main_process_port", "0"]  # fmt: skip
    return [*launcher, "-m", LOOP, *arguments]


def run_training(processes: int, arguments: Sequence[str]) -> None:
    """Runs the training loop with `arguments` in `processes` processes and waits for it.

    Each process gets an equal share of the cores as its thread count: on a 2-core machine two single-threaded
    processes train faster than one process of two threads, whose small matmuls split poorly across cores.

    Raises:
        subprocess.CalledProcessError: if the training fails.
    """
    threads = max(1, (os.cpu_count() or 1) // processes)
    subprocess.run(
        train_command(processes, arguments), check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}
    )
