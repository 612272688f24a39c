"""Tests of `vaswani_hf.training.launch`: the command lines that run the training loop in processes of its own."""

import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

from vaswani_hf.training.launch import train_command

CPU_2PROC = Path(__file__).resolve().parents[1] / "scripts" / "accelerate" / "cpu-2proc.yaml"


def test_one_process_runs_the_loop_itself():
    assert train_command(1, ["--config", "small-cpu"]) == [
        sys.executable,
        "-m",
        "vaswani_hf.training.loop",
        "--config",
        "small-cpu",
    ]


def test_two_processes_launch_as_the_shipped_cpu_config_says():
    """The main job launches with flags; users with `--config_file scripts/accelerate/cpu-2proc.yaml`: the two must
    describe the same launch."""
    command = train_command(2, ["--config", "small-cpu"])
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[-4:] == ["-m", "vaswani_hf.training.loop", "--config", "small-cpu"]
    flags = command[3:-4]
    values = dict(zip(flags[1::2], flags[2::2], strict=True))
    config = load_config_from_file(str(CPU_2PROC))
    assert flags[0] == "--multi_gpu" and config.distributed_type.value == "MULTI_GPU"
    assert int(values["--num_processes"]) == config.num_processes
    assert int(values["--num_machines"]) == config.num_machines
    assert values["--mixed_precision"] == config.mixed_precision == "no"


@pytest.mark.parametrize("processes", [0, -1, True, 1.5])
def test_a_process_count_that_is_not_a_positive_int_is_refused(processes):
    with pytest.raises(ValueError, match="processes must be a positive int"):
        train_command(processes, [])


def test_the_launched_module_is_the_loop_that_vaswani_train_runs():
    from vaswani_hf.training import loop

    assert train_command(1, [])[-1] == loop.__name__
