"""Validation: checks, without the network, that a staged folder is fit to upload.

No pickle files (by name and by content), the files that load the model are there, the card parses as the Hub parses
it, the weights equal the original's tensor for tensor, and a fresh Python process in which `vaswani_hf` cannot be
imported (`packageless_check.py`) loads the folder with `AutoModelForSeq2SeqLM` and translates a sentence: through the
folder's own code and `pipeline("translation")` with `trust_remote_code=True` for this package's models, through
transformers' own class and `generate()` for transformers' models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..model_card import check_model_card
from .errors import ValidationError
from .staging import PICKLE_SUFFIXES, SINGLE_WEIGHTS, weight_files

DEFAULT_SENTENCE = "Click the Save button to save the document."
# Run by path in a fresh interpreter; see its docstring.
PACKAGELESS_CHECK = Path(__file__).with_name("packageless_check.py")


@dataclass
class ValidationReport:
    """What `validate_staged` checked and found."""

    files: list[str]
    weight_files: list[str]
    num_tensors: int
    translation: str
    model_class: str


def is_pickle(path: Path) -> bool:
    """Whether `path` is a pickle by name or by content: a raw pickle (protocol 2 to 5 starts with 0x80 and the
    protocol number) or a zip archive, the format of `torch.save`, whose `data.pkl` runs code when loaded."""
    if path.name.endswith(PICKLE_SUFFIXES):
        return True
    with open(path, "rb") as file:
        head = file.read(4)
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head == b"PK\x03\x04"


def find_pickles(folder: str | Path) -> list[str]:
    """Files under `folder` (relative paths) that are pickles by name or by content."""
    folder = Path(folder)
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file() and is_pickle(path))


def code_files(config: dict) -> list[str]:
    """The code files a saved config's `auto_map` and `custom_pipelines` name (the modules they import are checked by
    loading the folder without the package)."""
    references = list((config.get("auto_map") or {}).values())
    references += [task["impl"] for task in (config.get("custom_pipelines") or {}).values() if "impl" in task]
    return sorted({f"{reference.rsplit('.', 1)[0]}.py" for reference in references})


def _check_loading_config(stage_dir: Path, config: dict) -> None:
    """The staged `config.json` names the code (`auto_map`, `custom_pipelines`) that its model type's config class
    writes: this package's models load without the package, transformers' own name none."""
    from transformers import AutoConfig

    model_type = config.get("model_type")
    try:
        reference = AutoConfig.for_model(model_type)
    except ValueError as error:
        raise ValidationError(
            f"{stage_dir / 'config.json'} has model_type {model_type!r}, which neither transformers nor vaswani_hf "
            "knows; stage a model that AutoModelForSeq2SeqLM loads."
        ) from error
    expected = reference.to_dict()
    for key in ("auto_map", "custom_pipelines"):
        if config.get(key) != expected.get(key):
            raise ValidationError(
                f"{stage_dir / 'config.json'} has {key} {config.get(key)!r}, not the {expected.get(key)!r} that "
                f"{type(reference).__name__} writes (the code that loads the model without "
                "this package); stage it again with stage_model."
            )


def _compare_weights(model_dir: Path, stage_dir: Path) -> int:
    """Checks that the staged shards hold exactly the original tensors (names, dtypes, values); returns how many."""
    import torch
    from safetensors import safe_open

    def tensors(folder: Path) -> dict[str, Path]:
        names = {}
        for name in weight_files(folder):
            with safe_open(folder / name, framework="pt") as weights:
                names.update(dict.fromkeys(weights.keys(), folder / name))
        return names

    original, staged = tensors(model_dir), tensors(stage_dir)
    if set(original) != set(staged):
        missing, extra = sorted(set(original) - set(staged)), sorted(set(staged) - set(original))
        raise ValidationError(
            f"the staged weights do not hold the same tensors as {model_dir}: missing {missing[:5]}, extra "
            f"{extra[:5]}. Check that the model directory loads with AutoModelForSeq2SeqLM."
        )
    for key, path in original.items():
        with safe_open(path, framework="pt") as left, safe_open(staged[key], framework="pt") as right:
            a, b = left.get_tensor(key), right.get_tensor(key)
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            raise ValidationError(
                f"the staged tensor {key} differs from the original in {model_dir} ({a.dtype} {tuple(a.shape)} vs "
                f"{b.dtype} {tuple(b.shape)}); nothing was uploaded."
            )
    return len(original)


def validate_staged(
    stage_dir: str | Path, model_dir: str | Path, *, sentence: str = DEFAULT_SENTENCE, timeout: float = 600
) -> ValidationReport:
    """Checks offline that `stage_dir` is fit to upload (see the module docstring) against the original `model_dir`.

    Raises:
        ValidationError: naming the first problem found.
    """
    stage_dir, model_dir = Path(stage_dir), Path(model_dir)
    pickles = find_pickles(stage_dir)
    if pickles:
        raise ValidationError(
            f"the folder {stage_dir} holds pickle files, which run code when loaded: {', '.join(pickles)}. Upload "
            "safetensors only: remove them, and save weights with save_pretrained."
        )
    if not (stage_dir / "config.json").is_file():
        raise ValidationError(f"the folder {stage_dir} lacks config.json; stage it again with stage_model.")
    config = json.loads((stage_dir / "config.json").read_text(encoding="utf-8"))
    _check_loading_config(stage_dir, config)
    required = ["generation_config.json", "README.md", *code_files(config)]
    missing = [name for name in required if not (stage_dir / name).is_file()]
    if not (stage_dir / "tokenizer.json").is_file() and not (stage_dir / "tokenizer_config.json").is_file():
        missing.append("tokenizer.json")
    shards = weight_files(stage_dir)
    missing += [name for name in shards if not (stage_dir / name).is_file()] if shards else [SINGLE_WEIGHTS]
    if missing:
        raise ValidationError(f"the folder {stage_dir} lacks {', '.join(missing)}; stage it again with stage_model.")

    try:
        check_model_card((stage_dir / "README.md").read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValidationError(f"{stage_dir / 'README.md'}: {error}") from error
    num_tensors = _compare_weights(model_dir, stage_dir)

    with tempfile.TemporaryDirectory(prefix="vaswani_hf-check-") as scratch:
        report_path = Path(scratch) / "report.json"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(Path(scratch) / "modules")}
        originals = [str((model_dir / name).resolve()) for name in weight_files(model_dir)]
        command = [sys.executable, str(PACKAGELESS_CHECK), str(stage_dir.resolve()), sentence, str(report_path)]
        try:
            result = subprocess.run(
                [*command, *originals],
                capture_output=True,
                text=True,
                env=env,
                cwd=scratch,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise ValidationError(
                f"loading {stage_dir} without vaswani_hf did not finish within {timeout:.0f} s."
            ) from error
        if result.returncode != 0:
            how = (
                "AutoModelForSeq2SeqLM and pipeline('translation') with trust_remote_code=True"
                if "auto_map" in config
                else "AutoModelForSeq2SeqLM and generate()"
            )
            raise ValidationError(
                f"{stage_dir} does not load where vaswani_hf is not installed ({how}, offline):\n"
                f"{result.stderr.strip()[-3000:]}"
            )
        report = json.loads(report_path.read_text(encoding="utf-8"))
    # The folder's own code files (a module under transformers_modules), or transformers' own class.
    expected_module = "transformers_modules" if report["remote"] else "transformers.models"
    if report["imported"] or not report["model_module"].startswith(expected_module):
        raise ValidationError(
            f"the check without the package imported {report['imported'] or report['model_module']}: "
            + (
                "the folder's own code files were not used."
                if report["remote"]
                else "transformers' own class was not used."
            )
        )
    if report["different"] or report["checked"] != num_tensors:
        raise ValidationError(
            f"the model loaded from {stage_dir} without vaswani_hf has weights that differ from {model_dir}: "
            f"{', '.join(report['different'][:5]) or 'tensors missing'}."
        )
    return ValidationReport(
        files=sorted(str(path.relative_to(stage_dir)) for path in stage_dir.rglob("*") if path.is_file()),
        weight_files=shards,
        num_tensors=num_tensors,
        translation=report["translation"],
        model_class=f"{report['model_module']}.{report['model_class']}",
    )
