"""Model cards for saved models: the Hub's README.md, made from the files a training run leaves behind.

`make_model_card` puts together what each module does:

- `inputs.load_card_inputs` reads a model directory (`config.json`, `generation_config.json`, the safetensors weights)
  and its training run directory (`run_config.yaml`, `train_summary.json`, `results.json`, `eval/*/scores.json`,
  read by `records`), plus the corpus's dataset card for the provenance and licences of the data (`corpus`);
- `rules.paper_departures` derives every departure from the paper by comparing the config and run config with the
  paper's preset, rather than by hand;
- `render.render_model_card` fills the template `templates/model_card.md`, with the Hub metadata of `metadata` (a
  `model-index` of BLEU and chrF per test set), and checks the text as the Hub parses it (`check_model_card`).
"""

from __future__ import annotations

from pathlib import Path

from ...files import write_atomic
from .inputs import CardInputs, load_card_inputs
from .metadata import check_model_card
from .render import render_model_card
from .rules import Departures, Difference, paper_departures


def write_model_card(path: str | Path, text: str) -> Path:
    """Writes the card's text atomically (a reader never sees half a card) and returns the path."""
    path = Path(path)
    write_atomic(path, text)
    return path


def make_model_card(
    model_dir: str | Path,
    run_dir: str | Path | None = None,
    output: str | Path | None = None,
    *,
    results: str | Path | None = None,
    eval_dir: str | Path | None = None,
    dataset_card: str | Path | None = None,
    data_license: str | None = None,
    model_id: str | None = None,
    model_name: str | None = None,
    license: str = "apache-2.0",
) -> tuple[str, list[str]]:
    """Reads the inputs, renders the card, writes it to `output` (when given) and returns `(text, notes)`, the notes
    saying which optional inputs were missing and left out."""
    inputs = load_card_inputs(
        model_dir, run_dir, results=results, eval_dir=eval_dir, dataset_card=dataset_card, data_license=data_license
    )
    text = render_model_card(inputs, model_id=model_id, model_name=model_name, license=license)
    if output is not None:
        write_model_card(output, text)
    return text, inputs.notes


__all__ = [
    "CardInputs",
    "Departures",
    "Difference",
    "check_model_card",
    "load_card_inputs",
    "make_model_card",
    "paper_departures",
    "render_model_card",
    "write_model_card",
]
