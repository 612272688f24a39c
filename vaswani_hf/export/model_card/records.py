"""Reading the records a model and its training run leave behind: JSON files, the parameter count from the safetensors
headers, and the test scores of `results.json` (`vaswani-main-job`) and `eval/*/scores.json` (`vaswani-evaluate`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCORE_KEYS = ("bleu", "chrf", "bleu_signature", "chrf_signature")


@dataclass
class TestResult:
    """Scores of one test set, as `vaswani_hf.evaluation.score` returns them, and where they came from."""

    split: str
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    source: str
    num_sentences: int | None = None
    decoding: dict | None = None
    # vaswani-evaluate records what it scored: (`test_set`, `split`), to pair a score with its baseline.
    test_set: tuple | None = None
    copy_bleu: float | None = None
    copy_chrf: float | None = None


def read_json(path: Path) -> dict:
    """The JSON in `path`; a malformed file is a ValueError that names it and says what to do."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); regenerate it or remove it.") from error


def count_parameters(model_dir: Path) -> int | None:
    """Parameters stored in the safetensors weights of `model_dir` (a shared matrix counts once), read from the file
    headers without loading a tensor. None when the directory holds no safetensors weights."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        metadata = read_json(index).get("metadata", {})
        if "total_parameters" in metadata:
            return int(metadata["total_parameters"])
        files = sorted(set(read_json(index)["weight_map"].values()))
    elif (model_dir / "model.safetensors").exists():
        files = ["model.safetensors"]
    else:
        return None
    total = 0
    for name in files:
        with safe_open(model_dir / name, framework="pt") as weights:
            for key in weights.keys():
                shape = weights.get_slice(key).get_shape()
                size = 1
                for dim in shape:
                    size *= dim
                total += size
    return total


def _test_result(split: str, scores: dict, source: Path) -> TestResult:
    missing = [key for key in SCORE_KEYS if key not in scores]
    if missing:
        raise ValueError(
            f"{source}: the scores of {split!r} lack {', '.join(missing)}; they must come from "
            "vaswani_hf.evaluation.score (vaswani-evaluate or vaswani-main-job)."
        )
    return TestResult(
        split=split,
        bleu=float(scores["bleu"]),
        chrf=float(scores["chrf"]),
        bleu_signature=scores["bleu_signature"],
        chrf_signature=scores["chrf_signature"],
        source=str(source),
        num_sentences=scores.get("num_sentences"),
        decoding=scores.get("decoding") if isinstance(scores.get("decoding"), dict) else None,
        test_set=(scores["test_set"], scores.get("split")) if scores.get("test_set") else None,
    )


def load_results(results: Path | None, eval_dir: Path | None) -> tuple[list[TestResult], list[dict], dict, list]:
    """Test scores from the main job's `results.json` (`test`, `copy_baseline`, `curve`, `examples`) and from
    `vaswani-evaluate`'s `eval_dir/<name>/scores.json`, named by their folder. A folder's scores replace
    the `results.json` scores of the same name. A `scores.json` without a model (`--copy-baseline`) is the baseline
    of the scores of the same test set.

    Returns `(results, curve, examples, notes)`.
    """
    tests: dict[str, TestResult] = {}
    baselines: dict[str, dict] = {}
    baselines_by_test_set: dict[tuple, dict] = {}
    curve: list[dict] = []
    examples: dict[str, str] = {}
    notes: list[str] = []
    if results is not None and results.is_file():
        data = read_json(results)
        for split, scores in (data.get("test") or {}).items():
            tests[split] = _test_result(split, scores, results)
        baselines.update(data.get("copy_baseline") or {})
        curve = list(data.get("curve") or [])
        examples = dict(data.get("examples") or {})
    elif results is not None:
        notes.append(f"no {results}: the card has no results from it")
    if eval_dir is not None and eval_dir.is_dir():
        for path in sorted(eval_dir.glob("*/scores.json")):
            scores = read_json(path)
            if "model" in scores and scores["model"] is None:
                baselines_by_test_set[(scores.get("test_set"), scores.get("split"))] = scores
            else:
                tests[path.parent.name] = _test_result(path.parent.name, scores, path)
    for split, result in tests.items():
        baseline = baselines_by_test_set.get(result.test_set) if result.test_set else baselines.get(split)
        if baseline is not None:
            result.copy_bleu = float(baseline["bleu"])
            result.copy_chrf = float(baseline["chrf"])
    if not tests:
        notes.append(
            "no test scores (results.json `test` or eval/*/scores.json): the card has no results and no model-index; "
            "score the model with vaswani-evaluate --output-dir RUN_DIR/eval/NAME"
        )
    return list(tests.values()), curve, examples, notes
