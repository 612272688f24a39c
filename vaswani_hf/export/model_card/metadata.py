"""The card's YAML header, which the Hub reads: licence, languages, datasets, task, library, and a `model-index` of
BLEU and chrF per test set; and the check that a card's text parses as the Hub parses it."""

from __future__ import annotations

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from .inputs import CardInputs


def eval_results(inputs: CardInputs) -> list[EvalResult]:
    """One BLEU and one chrF `EvalResult` per test set, for the card's `model-index`."""
    task = f"Translation {inputs.src_lang}→{inputs.tgt_lang}"
    entries = []
    for result in inputs.results:
        common = dict(
            task_type="translation",
            task_name=task,
            dataset_type=inputs.data.dataset_type,
            dataset_name=f"{inputs.data.dataset_name}, {result.split}",
            dataset_config=f"{inputs.src_lang}-{inputs.tgt_lang}",
            dataset_split=result.split,
        )
        metrics = (
            ("bleu", "BLEU (sacreBLEU)", result.bleu, result.bleu_signature),
            ("chrf", "chrF", result.chrf, result.chrf_signature),
        )
        for metric_type, name, value, signature in metrics:
            entries.append(
                EvalResult(
                    **common,
                    metric_type=metric_type,
                    metric_name=name,
                    metric_value=round(value, 2),
                    metric_config=signature,
                )
            )
    return entries


def card_metadata(inputs: CardInputs, model_name: str, license: str) -> ModelCardData:
    """The card's YAML header: licence, both languages, datasets, metrics and model-index, library and task."""
    results = eval_results(inputs)
    return ModelCardData(
        license=license,
        language=[inputs.src_lang, inputs.tgt_lang],
        # The Hub links `datasets` entries to Hub datasets; a corpus built locally has no such page, and is described
        # (with its licences) in the card's text instead.
        datasets=inputs.data.hub_datasets or None,
        metrics=["bleu", "chrf"] if results else None,
        library_name="transformers",
        pipeline_tag="translation",
        tags=[
            "translation",
            *(["transformer"] if inputs.paper_model else []),
            "encoder-decoder",
            "vaswani" if inputs.paper_model else inputs.config.get("model_type", ""),
            *(["custom_code"] if inputs.code_files else []),
        ],
        model_name=model_name if results else None,
        eval_results=results or None,
    )


def check_model_card(text: str) -> ModelCard:
    """Parses `text` as the Hub does (`huggingface_hub.ModelCard`) and checks its `model-index` with
    `model_index_to_eval_results`; returns the parsed card.

    Raises:
        ValueError: if the metadata does not parse, or the model-index is malformed.
    """
    if not text.startswith("---\n"):
        raise ValueError("The model card has no YAML metadata block: it must start with a line '---'.")
    try:
        card = ModelCard(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ValueError(f"The model card's metadata does not parse as the Hub's ModelCard: {error}") from error
    model_index = card.data.to_dict().get("model-index")
    if model_index is not None:
        try:
            model_index_to_eval_results(model_index)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"The model card's model-index is malformed: {error!r}") from error
    return card
