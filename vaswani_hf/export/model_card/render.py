"""The card's text: the template `templates/model_card.md` filled with the inputs, the Hub metadata and the departures
from the paper.

The sections: the architecture, the training run, the data and its licences, the scores with their sacreBLEU
signatures, every departure from the paper, intended use, loading instructions and the citation.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from .inputs import CardInputs
from .metadata import card_metadata, check_model_card
from .rules import paper_departures, paper_reference

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "model_card.md"

PAPER_BIBTEX = """\
@inproceedings{vaswani2017attention,
  title     = {Attention Is All You Need},
  author    = {Vaswani, Ashish and Shazeer, Noam and Parmar, Niki and Uszkoreit, Jakob and Jones, Llion and
               Gomez, Aidan N. and Kaiser, {\\L}ukasz and Polosukhin, Illia},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {30},
  pages     = {5998--6008},
  year      = {2017},
  url       = {https://arxiv.org/abs/1706.03762}
}"""

# config.json entries that say nothing about the network, left out of the card's table for a model of another type.
CONFIG_BOILERPLATE = {
    "architectures", "auto_map", "custom_pipelines", "dtype", "torch_dtype", "transformers_version", "model_type",
    "is_encoder_decoder", "use_cache", "output_attentions", "output_hidden_states", "return_dict",
    "tie_encoder_decoder", "chunk_size_feed_forward", "problem_type", "tokenizer_class",
}  # fmt: skip

# `vaswani-main-job` scores each kept checkpoint on this split for its BLEU-over-training-time curve.
CURVE_SPLIT = "test_help"
DEFAULT_EXAMPLE = "Click the Save button to save the document."


def _decoding_text(decoding: dict | None) -> str:
    if not decoding or decoding.get("num_beams") is None:
        return "transformers' default decoding (no generation config)"
    beams = decoding["num_beams"]
    parts = [f"beam {beams}" if beams > 1 else "greedy"]
    if beams > 1 and decoding.get("length_penalty") is not None:
        kind = "GNMT" if decoding.get("length_penalty_type") == "gnmt" else "power"
        parts.append(f"{kind} length penalty {decoding['length_penalty']}")
    if decoding.get("max_new_tokens"):
        parts.append(f"at most {decoding['max_new_tokens']} new tokens")
    elif decoding.get("max_length_offset") is not None:
        parts.append(f"at most source length + {decoding['max_length_offset']} tokens")
    return ", ".join(parts)


def _value(value) -> str:
    """A setting's value as the card shows it."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        # As config.json and run_config.yaml write them.
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def model_fields(config: dict) -> list[tuple[str, object]]:
    """The settings of `config.json` that describe the network, for the card of a model of another type than the
    paper's (whose card compares its fields with Table 3 instead)."""
    return [
        (key, value)
        for key, value in sorted(config.items())
        if key not in CONFIG_BOILERPLATE
        and not key.endswith(("_token_id", "_token_ids"))
        and isinstance(value, bool | int | float | str)
    ]


def render_model_card(
    inputs: CardInputs,
    *,
    model_id: str | None = None,
    model_name: str | None = None,
    license: str = "apache-2.0",
) -> str:
    """The card's text (README.md). `model_id` is what the loading examples pass to `from_pretrained` (a Hub repo id;
    default: the model directory's path); `model_name` names the model in the title and the model-index (default:
    the repo name, or `vaswani_hf-<run directory name>`); `license` is the Hub licence id of the uploaded files."""
    if model_name is None:
        model_name = model_id.split("/")[-1] if model_id else f"vaswani_hf-{inputs.run_dir.resolve().name}"
    model_id = model_id or str(inputs.model_dir)
    metadata = card_metadata(inputs, model_name, license)
    departures = paper_departures(inputs.config, inputs.run_config, inputs.generation_config, inputs.data)
    reference_config, reference_run = paper_reference(inputs.run_config)
    decodings: dict[str, list[str]] = {}
    for result in inputs.results:
        decodings.setdefault(_decoding_text(result.decoding), []).append(result.split)
    signatures = sorted({(r.bleu_signature, r.chrf_signature) for r in inputs.results})
    examples = list(inputs.examples.items())
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Markdown, not HTML: escaping would garble sentences and signatures.
        autoescape=False,
    )
    environment.filters["value"] = _value
    environment.filters["thousands"] = lambda number: f"{number:,}"
    environment.filters["score"] = lambda number: "" if number is None else f"{number:.1f}"
    text = environment.get_template(TEMPLATE_NAME).render(
        metadata=metadata.to_yaml(),
        model_name=model_name,
        model_id=model_id,
        license=license,
        config=inputs.config,
        paper_model=inputs.paper_model,
        network=(inputs.config.get("architectures") or [inputs.config.get("model_type")])[0],
        d_k=inputs.config["d_model"] // inputs.config["num_heads"] if inputs.paper_model else None,
        model_fields=model_fields(inputs.config),
        num_parameters=inputs.num_parameters,
        preset=inputs.run_config.model.preset,
        reference_config=reference_config,
        reference_run=reference_run,
        paper_tokens=(reference_run.train.max_steps or 0) * reference_run.train.update_tokens,
        run=inputs.run_config,
        summary=inputs.summary,
        data=inputs.data,
        results=inputs.results,
        decodings=decodings,
        signatures=signatures,
        curve=inputs.curve,
        curve_split=CURVE_SPLIT,
        curve_final=next((r for r in inputs.results if r.split == CURVE_SPLIT), None),
        examples=examples,
        example=examples[0][0] if examples else DEFAULT_EXAMPLE,
        departures=departures,
        src_lang=inputs.src_lang,
        tgt_lang=inputs.tgt_lang,
        code_files=inputs.code_files,
        decoding_text=_decoding_text(inputs.generation_config),
        bibtex=PAPER_BIBTEX,
    )
    # Sections left out leave runs of blank lines behind; Markdown needs one between blocks.
    text = re.sub(r"\n{3,}", "\n\n", text)
    check_model_card(text)
    return text
