"""The README's Python snippets run as written, in order, in a scratch directory; the one meant for a process without
the package runs in a subprocess where `vaswani_hf` cannot be imported."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
WITHOUT_PACKAGE = "# In a process where vaswani_hf is not installed"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_snippets_run(tmp_path, monkeypatch, run_without_package):
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
    result = run_without_package(remote[0])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "translation_text" in result.stdout
