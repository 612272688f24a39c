"""Everything a card is made from, read from a model directory and its training run directory.

The model's `config.json` and the run's `run_config.yaml` are required: without them the card could not say what the
model is. Everything else is optional and left out of the card when missing; `CardInputs.notes` says what was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...configuration_vaswani import VaswaniConfig
from ...generation_vaswani import PAPER_DECODING
from ...run_dir import RunDir
from ...training.run_config import RunConfig
from .corpus import DataProvenance, data_provenance
from .records import TestResult, count_parameters, load_results, read_json


@dataclass
class CardInputs:
    """Everything a card is made from, read from the model and run directories."""

    model_dir: Path
    run_dir: Path
    config: dict
    generation_config: dict | None
    num_parameters: int | None
    run_config: RunConfig
    summary: dict | None
    data: DataProvenance
    results: list[TestResult]
    curve: list[dict]
    examples: dict[str, str]
    notes: list[str] = field(default_factory=list)
    # The code files saved beside the weights that load the model without this package (none for transformers' own).
    code_files: list[str] = field(default_factory=list)

    @property
    def paper_model(self) -> bool:
        """Whether the model is this package's Transformer, rather than another seq2seq model trained by its recipe."""
        return self.config.get("model_type") == VaswaniConfig.model_type

    @property
    def src_lang(self) -> str:
        return self.run_config.data.src_lang

    @property
    def tgt_lang(self) -> str:
        return self.run_config.data.tgt_lang


def load_card_inputs(
    model_dir: str | Path,
    run_dir: str | Path | None = None,
    *,
    results: str | Path | None = None,
    eval_dir: str | Path | None = None,
    dataset_card: str | Path | None = None,
    data_license: str | None = None,
) -> CardInputs:
    """Reads what a card needs. `run_dir` defaults to the model directory's parent (where `vaswani-train` puts
    `model/`), `results` to `run_dir/results.json` and `eval_dir` to `run_dir/eval`.

    Raises:
        FileNotFoundError: if `model_dir/config.json` or `run_dir/run_config.yaml` is missing (the message says what
            to pass instead), or the built-in corpus's dataset card is.
        ValueError: if a file is malformed.
    """
    model_dir = Path(model_dir)
    run_dir = Path(run_dir) if run_dir is not None else model_dir.parent
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} is missing: {model_dir} is not a saved model. Pass the folder that "
            "save_pretrained wrote (e.g. outputs/main-job/model)."
        )
    run_config_path = RunDir(run_dir).run_config
    if not run_config_path.is_file():
        raise FileNotFoundError(
            f"{run_config_path} is missing: the card describes the training run from it. Pass the run's output_dir "
            "(the folder vaswani-train wrote run_config.yaml to) as the run directory (--run-dir)."
        )
    notes: list[str] = []
    config = read_json(config_path)
    generation_path = model_dir / "generation_config.json"
    generation_config = read_json(generation_path) if generation_path.is_file() else None
    if generation_config is None:
        notes.append(f"no {generation_path}: the card lists the decoding as not set")
    num_parameters = count_parameters(model_dir)
    if num_parameters is None:
        notes.append(f"no safetensors weights in {model_dir}: the card gives no parameter count")
    run_config = RunConfig.load(run_config_path)
    summary_path = RunDir(run_dir).train_summary
    summary = read_json(summary_path) if summary_path.is_file() else None
    if summary is None:
        notes.append(f"no {summary_path}: the card has no training statistics (updates, tokens, minutes)")
    data = data_provenance(run_config, Path(dataset_card) if dataset_card else None, data_license)
    test_results, curve, examples, result_notes = load_results(
        Path(results) if results is not None else RunDir(run_dir).results,
        Path(eval_dir) if eval_dir is not None else run_dir / "eval",
    )
    for result in test_results:
        if result.num_sentences is None:
            result.num_sentences = data.split_sizes.get(result.split)
        if result.decoding is None and generation_config is not None:
            result.decoding = {key: generation_config.get(key) for key in PAPER_DECODING}
    return CardInputs(
        model_dir=model_dir,
        run_dir=run_dir,
        config=config,
        generation_config=generation_config,
        num_parameters=num_parameters,
        run_config=run_config,
        summary=summary,
        data=data,
        results=test_results,
        curve=curve,
        examples=examples,
        notes=notes + result_notes,
        # What save_pretrained of this package's models copies beside the weights, which `auto_map` points into.
        code_files=sorted(path.name for path in model_dir.glob("*.py")) if config.get("auto_map") else [],
    )
