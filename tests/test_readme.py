"""The Python snippets of the README and the docs run as written, in order (the docs' snippets use the model the
README's save), in a scratch directory; the one meant for a process without the package runs in a subprocess where
`vaswani_hf` cannot be imported."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "docs" / "trainer.md", ROOT / "docs" / "publishing.md", ROOT / "docs" / "studies.md"]
WITHOUT_PACKAGE = "# In a process where vaswani_hf is not installed"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_readme_snippets_run(tmp_path, monkeypatch, run_without_package):
    blocks = [(page, block) for page in PAGES for block in python_blocks(page)]
    assert len(blocks) >= 4 and {page for page, _ in blocks} == set(PAGES)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    remote = []
    for page, block in blocks:
        if block.startswith(WITHOUT_PACKAGE):
            remote.append(block)
        else:
            exec(compile(block, str(page), "exec"), namespace)
    assert (tmp_path / "my-transformer" / "model.safetensors").exists()
    # docs/trainer.md: the stock Seq2SeqTrainer script fine-tuned and saved both kinds of model, and scored them.
    for name, model_type in (("my-transformer-finetuned", "vaswani"), ("my-rnn-finetuned", "rnn_seq2seq")):
        assert (tmp_path / name / "model.safetensors").exists(), name
        assert json.loads((tmp_path / name / "config.json").read_text())["model_type"] == model_type
    assert {"eval_loss", "eval_bleu", "eval_chrf"} <= set(namespace["trainer"].evaluate())
    assert len(remote) == 1
    result = run_without_package(remote[0])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "translation_text" in result.stdout


def test_every_page_with_python_is_run():
    """A page of README or docs/ whose Python snippets this file does not run would go stale unseen."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    with_python = {page for page in pages if python_blocks(page)}
    assert with_python == set(PAGES), sorted(str(page.relative_to(ROOT)) for page in with_python ^ set(PAGES))
