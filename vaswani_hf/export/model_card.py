"""Model cards for saved models: the Hub's README.md, made from the files a training run leaves behind.

`load_card_inputs` reads a model directory (`config.json`, `generation_config.json`, the safetensors weights) and its
training run directory (`run_config.yaml`, `train_summary.json`, `results.json`, `eval/*/scores.json`), plus the
corpus's dataset card for the provenance and licences of the data. `render_model_card` fills the template
`templates/model_card.md` with them: Hub metadata with a `model-index` of BLEU and chrF per test set, the
architecture, the training run, the data and its licences, the scores with their sacreBLEU signatures, every
departure from the paper (derived by comparing the config and run config with the paper's preset, not written by
hand), intended use, loading instructions and the citation.

The model's `config.json` and the run's `run_config.yaml` are required: without them the card could not say what the
model is. Everything else is optional and left out of the card when missing; `CardInputs.notes` says what was.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from ..configuration_vaswani import VaswaniConfig
from ..data.default_corpus import CACHE_SUBDIR, default_cache_dir
from ..files import write_atomic
from ..generation_vaswani import PAPER_DECODING
from ..run_dir import RunDir
from ..training.run_config import RunConfig

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

# The paper's training data (§5.1), against which a run's corpus is compared.
PAPER_CORPUS = "hub:wmt14:de-en"
PAPER_DATA = "WMT 2014 English-German, about 4.5M sentence pairs (§5.1)"
PAPER_LANGUAGES = ("en", "de")

# Where the paper fixes each setting; a setting missing here is still compared, only without its section.
PAPER_SECTIONS = {
    "vocab_size": "shared source-target BPE vocabulary (§3.4, §5.1)",
    "d_model": "model width (§3, Table 3)",
    "d_ff": "feed-forward inner width (Eq. 2, Table 3)",
    "num_heads": "attention heads (§3.2.2, Table 3)",
    "encoder_layers": "encoder layers N (§3.1)",
    "decoder_layers": "decoder layers N (§3.1)",
    "dropout": "P_drop on sub-layer outputs and embeddings (§5.4)",
    "train.label_smoothing": "label smoothing eps_ls of the training loss (§5.4)",
    "attention_dropout": "dropout on attention weights (none in the paper)",
    "norm_first": "pre-norm instead of the paper's post-norm LayerNorm(x + Sublayer(x)) (§3.1)",
    "position_embedding_type": "positional encodings (§3.5)",
    "tie_word_embeddings": "one matrix for both embeddings and the output projection (§3.4)",
    "train.update_tokens": "target tokens per update (§5.1: about 25000)",
    "train.warmup_steps": "warm-up updates of Eq. 3 (§5.3)",
    "train.lr_scale": "factor on the learning rate of Eq. 3 (§5.3)",
    "train.weight_decay": "weight decay (none in the paper's Adam, §5.3)",
    "train.clip_norm": "gradient-norm clipping (none in the paper)",
    "train.max_steps": "training updates (§5.2: 100k base, 300k big)",
    "train.max_epochs": "training epochs (the paper counts updates)",
    "train.max_minutes": "training time limit in minutes (the paper counts updates)",
    "train.mixed_precision": "autocast precision (the paper trains in fp32)",
    "checkpoint.every_minutes": "minutes between checkpoints (§6.1: 10)",
    "checkpoint.every_steps": "updates between checkpoints (§6.1 checkpoints by time)",
    "checkpoint.average_last": "checkpoints averaged (§6.1: 5 base, 20 big)",
    "data.tokenizer": "a given tokenizer instead of a BPE trained on the training data (§5.1)",
    "num_beams": "beam size (§6.1)",
    "length_penalty": "length penalty alpha (§6.1)",
    "length_penalty_type": "length penalty form (§6.1: GNMT)",
    "max_length_offset": "output limit: source length + this (§6.1)",
    "early_stopping": "ending the search early (§6.1)",
}
# Model-config fields the paper says nothing about, or that do not change what the model computes.
CONFIG_FIELDS_NOT_IN_PAPER = {
    "max_position_embeddings": "longest accepted sequence",
    "layer_norm_eps": "LayerNorm epsilon",
    "use_cache": "decoder cache at inference",
    "is_encoder_decoder": "model layout",
    "pad_token_id": "token id",
    "bos_token_id": "token id",
    "eos_token_id": "token id",
    "decoder_start_token_id": "token id",
}
# Run-config keys the paper says nothing about, or that do not change the trained weights.
RUN_KEYS_NOT_IN_PAPER = {
    "output_dir": "where the run was written",
    "model.attn_implementation": "attention kernel, same results",
    "data.validation": "validation data, not trained on",
    "data.max_length": "longest training pair in tokens",
    "data.clean": "corpus cleaning",
    "data.max_words": "corpus cleaning",
    "data.max_ratio": "corpus cleaning",
    "data.bleu_sentences": "validation BLEU during training",
    "train.max_tokens": "micro-batch size; updates keep their token budget",
    "train.seed": "random seed",
    "train.log_every": "logging",
    "checkpoint.keep": "checkpoints kept on disk",
    "eval.every_steps": "validation during training",
    "eval.num_beams": "validation during training",
    "eval.max_tokens": "validation during training",
}
# Run-config keys compared otherwise: the vocabulary size through the model config, the corpus and languages with
# the paper's data (the presets name the built-in corpus, not WMT 2014).
RUN_KEYS_COMPARED_ELSEWHERE = {"data.vocab_size", "data.corpus", "data.src_lang", "data.tgt_lang"}

# config.json entries that say nothing about the network, left out of the card's table for a model of another type.
CONFIG_BOILERPLATE = {
    "architectures", "auto_map", "custom_pipelines", "dtype", "torch_dtype", "transformers_version", "model_type",
    "is_encoder_decoder", "use_cache", "output_attentions", "output_hidden_states", "return_dict",
    "tie_encoder_decoder", "chunk_size_feed_forward", "problem_type", "tokenizer_class",
}  # fmt: skip

# `vaswani-main-job` scores each kept checkpoint on this split for its BLEU-over-training-time curve.
CURVE_SPLIT = "test_help"
SCORE_KEYS = ("bleu", "chrf", "bleu_signature", "chrf_signature")
DEFAULT_EXAMPLE = "Click the Save button to save the document."


@dataclass
class Difference:
    """One setting whose value differs from the paper's (`paper`) in this model or run (`value`)."""

    key: str
    paper: object
    value: object
    about: str


@dataclass
class Departures:
    """`from_paper`: settings the paper fixes and this model changes. `other`: differences from the paper preset in
    settings the paper does not fix or that do not change the weights (listed so that every difference is shown)."""

    from_paper: list[Difference]
    other: list[Difference]


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


@dataclass
class DataProvenance:
    """The training corpus: what it is, where it comes from, under which licences."""

    corpus: str
    description: str
    licence: str
    sources: list[dict] = field(default_factory=list)
    split_sizes: dict[str, int] = field(default_factory=dict)
    hub_datasets: list[str] = field(default_factory=list)
    dataset_type: str = ""
    dataset_name: str = ""
    dataset_card: str | None = None
    # What the corpus guarantees about its held-out splits, where it records that.
    held_out: str = ""


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


def _read_json(path: Path) -> dict:
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
        metadata = _read_json(index).get("metadata", {})
        if "total_parameters" in metadata:
            return int(metadata["total_parameters"])
        files = sorted(set(_read_json(index)["weight_map"].values()))
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


def paper_reference(run_config: RunConfig) -> tuple[VaswaniConfig, RunConfig]:
    """The paper's model config and recipe for the Table 3 row the run started from (`model.preset`)."""
    preset = run_config.model.preset
    config = VaswaniConfig.big() if preset == "big" else VaswaniConfig.base()
    return config, RunConfig.load(preset)


def paper_departures(
    config: dict, run_config: RunConfig, generation_config: dict | None, data: DataProvenance | None = None
) -> Departures:
    """Every difference between this model and the paper's preset it started from (`model.preset`, `base` or `big`):
    the model config against `VaswaniConfig.base()`/`.big()`, the run config against the preset YAML, the saved
    decoding against the paper's (§6.1), and the training corpus against WMT 2014 English-German (described by
    `data` where given)."""
    reference_config, reference_run = paper_reference(run_config)
    from_paper: list[Difference] = []
    other: list[Difference] = []

    if config.get("model_type") != VaswaniConfig.model_type:
        # Another network altogether: its fields have no counterpart in Table 3, so the network is one departure.
        network = (config.get("architectures") or [config.get("model_type")])[0]
        from_paper.append(Difference("model", "the Transformer (§3)", network, "the network (§3)"))
    # The model's own config is the truth about the architecture (the run config's model section only overrides).
    for name in VaswaniConfig.__annotations__ if not from_paper else ():
        paper, value = getattr(reference_config, name), config.get(name, getattr(reference_config, name))
        if value == paper:
            continue
        if name in CONFIG_FIELDS_NOT_IN_PAPER:
            other.append(Difference(name, paper, value, CONFIG_FIELDS_NOT_IN_PAPER[name]))
        else:
            from_paper.append(Difference(name, paper, value, PAPER_SECTIONS.get(name, "")))

    ours, theirs = run_config.to_flat_dict(), reference_run.to_flat_dict()
    for key, value in ours.items():
        paper = theirs.get(key)
        if value == paper or key in RUN_KEYS_COMPARED_ELSEWHERE:
            continue
        if key in RUN_KEYS_NOT_IN_PAPER:
            other.append(Difference(key, paper, value, RUN_KEYS_NOT_IN_PAPER[key]))
        elif not key.startswith("model."):
            from_paper.append(Difference(key, paper, value, PAPER_SECTIONS.get(key, "")))

    decoding = generation_config or {}
    for key, paper in PAPER_DECODING.items():
        if decoding.get(key) != paper:
            from_paper.append(Difference(f"generation.{key}", paper, decoding.get(key), PAPER_SECTIONS.get(key, "")))

    languages = (run_config.data.src_lang, run_config.data.tgt_lang)
    if (run_config.data.corpus, *languages) != (PAPER_CORPUS, *PAPER_LANGUAGES):
        corpus = f"{run_config.data.corpus} ({run_config.data.src_lang}→{run_config.data.tgt_lang})"
        if data is not None and data.dataset_name:
            corpus = f"{data.dataset_name}, {run_config.data.src_lang}→{run_config.data.tgt_lang}"
            if "train" in data.split_sizes:
                corpus += f", {data.split_sizes['train']:,} sentence pairs"
        from_paper.append(Difference("data.corpus", PAPER_DATA, corpus, "training corpus (§5.1)"))
    return Departures(from_paper, other)


# ---------------------------------------------------------------------------------------------------------------------
# Data provenance
# ---------------------------------------------------------------------------------------------------------------------
def _markdown_table(text: str, heading: str) -> list[list[str]]:
    """The body rows (header and separator left out) of the first Markdown table after `## heading` in `text`."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    if match is None:
        return []
    lines: list[str] = []
    for line in match.group(1).splitlines():
        if line.strip().startswith("|"):
            lines.append(line.strip())
        elif lines:
            break
    rows = [[cell.strip().strip("`") for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows[1:] if not set("".join(row)) <= set("-: ")]


def default_corpus_provenance(dataset_card: Path | None) -> DataProvenance:
    """Provenance of the built-in corpus from its dataset card (`README.md` of the cached corpus, written by
    `vaswani_hf.data.default_corpus`): the Debian packages with versions and licences, and the split sizes."""
    path = Path(dataset_card) if dataset_card is not None else default_cache_dir() / CACHE_SUBDIR / "README.md"
    if not path.is_file():
        raise FileNotFoundError(
            f"The run trained on the built-in corpus, but its dataset card {path} (sources, versions, licences) is "
            "missing. Build or load the corpus with `vaswani-corpus` (it writes the card), or "
            "pass the card's path (--dataset-card)."
        )
    text = path.read_text(encoding="utf-8")
    sources = [
        {"package": row[0], "version": row[1], "licence": row[2], "content": row[3]}
        for row in _markdown_table(text, "Sources and licences")
        if len(row) == 4
    ]
    if not sources:
        raise ValueError(
            f"{path} has no table under '## Sources and licences'; it is not a dataset card of "
            "vaswani_hf.data.default_corpus. Rebuild it with `vaswani-corpus --refresh`."
        )
    split_sizes = {row[0]: int(row[-1]) for row in _markdown_table(text, "Row counts") if row[-1].isdigit()}
    # The licence string that vaswani_hf.data.default_corpus stores with each split says which part is under which licence.
    info = path.parent / "train" / "dataset_info.json"
    licence = _read_json(info).get("license") if info.is_file() else None
    contents = "; ".join(source["content"] for source in sources)
    return DataProvenance(
        corpus="default",
        description=f"the built-in English-German corpus of `vaswani_hf.data.default_corpus` ({contents})",
        licence=licence or " AND ".join(sorted({source["licence"] for source in sources})),
        sources=sources,
        split_sizes=split_sizes,
        dataset_type=f"vaswani_hf-{CACHE_SUBDIR}",
        dataset_name=f"vaswani_hf built-in English-German corpus ({CACHE_SUBDIR})",
        dataset_card=str(path),
        # vaswani_hf.data.default_corpus.build_default_corpus drops every training pair with a held-out side.
        held_out="no English or German sentence of the validation and test splits occurs in the training split",
    )


def data_provenance(run_config: RunConfig, dataset_card: Path | None, data_license: str | None) -> DataProvenance:
    """What the run trained on (`data.corpus`), where it comes from and its licence. `data_license` overrides the
    licence found (or not found) in the corpus's records."""
    corpus = run_config.data.corpus
    if corpus == "default":
        provenance = default_corpus_provenance(dataset_card)
    elif corpus.startswith("hub:"):
        name, _, config = corpus[len("hub:") :].partition(":")
        provenance = DataProvenance(
            corpus=corpus,
            description=f"the Hugging Face Hub dataset [`{name}`](https://huggingface.co/datasets/{name})"
            + (f", configuration `{config}`" if config else ""),
            licence=f"see the dataset card of https://huggingface.co/datasets/{name}",
            hub_datasets=[name],
            dataset_type=name,
            dataset_name=name + (f" ({config})" if config else ""),
        )
    else:
        provenance = DataProvenance(
            corpus=corpus,
            description=f"local parallel data `{corpus}`",
            licence="not recorded by the run",
            dataset_type=re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(corpus).name) or "local",
            dataset_name=f"local data {Path(corpus).name}",
        )
    if data_license is not None:
        provenance.licence = data_license
    return provenance


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation results
# ---------------------------------------------------------------------------------------------------------------------
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
        data = _read_json(results)
        for split, scores in (data.get("test") or {}).items():
            tests[split] = _test_result(split, scores, results)
        baselines.update(data.get("copy_baseline") or {})
        curve = list(data.get("curve") or [])
        examples = dict(data.get("examples") or {})
    elif results is not None:
        notes.append(f"no {results}: the card has no results from it")
    if eval_dir is not None and eval_dir.is_dir():
        for path in sorted(eval_dir.glob("*/scores.json")):
            scores = _read_json(path)
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


# ---------------------------------------------------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------------------------------------------------
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
    config = _read_json(config_path)
    generation_path = model_dir / "generation_config.json"
    generation_config = _read_json(generation_path) if generation_path.is_file() else None
    if generation_config is None:
        notes.append(f"no {generation_path}: the card lists the decoding as not set")
    num_parameters = count_parameters(model_dir)
    if num_parameters is None:
        notes.append(f"no safetensors weights in {model_dir}: the card gives no parameter count")
    run_config = RunConfig.load(run_config_path)
    summary_path = RunDir(run_dir).train_summary
    summary = _read_json(summary_path) if summary_path.is_file() else None
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
