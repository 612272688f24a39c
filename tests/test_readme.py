"""The README's Python snippets run as written, in order, in a scratch directory; the one meant for a process without
the package runs in a subprocess where `vaswani_hf` cannot be imported."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
WITHOUT_PACKAGE = "# In a process where vaswani_hf is not installed"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_snippets_run(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    remote = []
    for block in blocks:
        if block.startswith(WITHOUT_PACKAGE):
            remote.append(block)
        else:
            exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "my-transformer" / "model.safetensors").exists()
    assert len(remote) == 1
    script = tmp_path / "remote.py"
    script.write_text('import sys\nsys.modules["vaswani_hf"] = None\n' + remote[0])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "translation_text" in result.stdout
