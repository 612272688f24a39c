"""What every results file records about where its figures came from: the command, the package's commit, the versions
of the libraries that decide the numbers, and the processor.

Time-budgeted figures (updates in 20 minutes, tokens/s) depend on the CPU: an Intel Xeon with AMX multiplies bf16
matrices several times faster than a CPU without, and float results differ between kernels too. A figure without its
machine cannot be compared with another.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The processor's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The processor's feature flags (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def bf16_matrix_units(flags: set[str] | None = None) -> str | None:
    """The CPU's hardware for bf16 matrix products: "amx" (tile units, Intel Sapphire Rapids and later),
    "avx512_bf16" (dot-product instructions), or None where bf16 is emulated in fp32 arithmetic."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def source_commit() -> str | None:
    """The git commit of the package's source, with "-dirty" when its files differ from it; None outside a
    checkout (an installed wheel)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "vaswani_hf", "scripts")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries whose releases change the figures."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("vaswani_hf", "torch", "transformers", "accelerate", "tokenizers", "sacrebleu"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(command: list[str] | None = None) -> dict:
    """The record to store beside figures: `command` (default: this process's command line), `commit`, `versions`,
    `cpu` (model, cores, bf16 matrix units), `threads` and the UTC `date`."""
    import torch

    argv = command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {
        "command": shlex.join(argv),
        "commit": source_commit(),
        "versions": library_versions(),
        "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "bf16_matrix_units": bf16_matrix_units()},
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
