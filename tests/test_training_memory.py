"""Memory settings of a training process (vaswani_hf.training.memory)."""

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_configures_glibc():
    """In a process of its own: the setting is process-wide, and would change what memory tests after it measure."""
    code = "from vaswani_hf.training.memory import keep_freed_memory; assert keep_freed_memory() is True"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
