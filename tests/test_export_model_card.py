"""Tests of `vaswani_hf.export.model_card` and `vaswani-model-card`: cards made from a tiny saved model and the files
a training run writes, parsed as the Hub parses them."""

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import save_tiny_marian
from datasets import Dataset, DatasetDict
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.data import default_corpus
from vaswani_hf.export.model_card import (
    check_model_card,
    load_card_inputs,
    make_model_card,
    paper_departures,
    render_model_card,
)
from vaswani_hf.generation_vaswani import PAPER_DECODING
from vaswani_hf.training.run_config import RunConfig

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ["the house is small", "das Haus ist klein", "the cat sleeps", "die Katze schläft"] * 20
BLEU_SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIGNATURE = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
VERSIONS = {"libreoffice-help-en-us": "1:7.4", "libreoffice-help-de": "1:7.4", "trans-de-en": "1.9-6"}


def scores(bleu: float, chrf: float, **extra) -> dict:
    return {"bleu": bleu, "chrf": chrf, "bleu_signature": BLEU_SIGNATURE, "chrf_signature": CHRF_SIGNATURE, **extra}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny pre-norm model and its tokenizer, saved with save_pretrained."""
    torch.manual_seed(0)
    tokenizer = train_shared_bpe(CORPUS, vocab_size=80)
    config = VaswaniConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        d_ff=32,
        num_heads=2,
        encoder_layers=2,
        decoder_layers=2,
        norm_first=True,
    )
    path = tmp_path_factory.mktemp("model")
    VaswaniForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dataset_card(tmp_path_factory) -> Path:
    """The dataset card `vaswani_hf.data.default_corpus` writes, for a corpus of a few pairs."""
    rows = {"translation": [{"en": "Open a file.", "de": "Öffnen Sie eine Datei."}], "origin": ["help"], "doc": ["a"]}
    corpus = DatasetDict({split: Dataset.from_dict(rows) for split in default_corpus.SPLITS})
    stats = {
        "help_pairs": 4,
        "help_pages": 1,
        "ding_pairs": 0,
        "duplicates": {split: Counter() for split in default_corpus.SPLITS},
        "leaked": Counter(),
        "validation_in_test": 0,
    }
    path = tmp_path_factory.mktemp("corpus") / "README.md"
    path.write_text(default_corpus._dataset_card(corpus, VERSIONS, stats), encoding="utf-8")
    return path


def make_run(
    tmp_path: Path, model_dir: Path, *overrides: str, results: dict | None = None, summary: bool = True
) -> Path:
    """A run folder as vaswani-train (and the main job) leave it, with the tiny model linked in as `model/`."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model").symlink_to(model_dir, target_is_directory=True)
    config = RunConfig.load("small-cpu", [f"output_dir={run_dir}", *overrides])
    (run_dir / "run_config.yaml").write_text(config.to_yaml())
    if summary:
        summary_data = {
            "updates": 12,
            "epochs": 1.5,
            "target_tokens": 48000,
            "train_minutes": 0.5,
            "averaged_checkpoints": ["checkpoint-00000010", "checkpoint-00000012"],
        }
        (run_dir / "train_summary.json").write_text(json.dumps(summary_data))
    if results is not None:
        (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


MAIN_JOB_RESULTS = {
    "test": {"test_help": scores(21.14, 50.48), "test_dictionary": scores(4.87, 25.5)},
    "copy_baseline": {"test_help": scores(3.84, 20.3), "test_dictionary": scores(0.08, 14.32)},
    "curve": [{"checkpoint": "checkpoint-00000010", "updates": 10, "minutes": 0.4, "bleu": 1.5, "chrf": 10.2}],
    "examples": {"Open the file.": "Öffnen Sie die Datei."},
}


def test_card_metadata_parses_with_model_index_per_test_set(model_dir, dataset_card, tmp_path):
    run_dir = make_run(tmp_path, model_dir, results=MAIN_JOB_RESULTS)
    text, notes = make_model_card(run_dir / "model", dataset_card=dataset_card, model_id="someone/tiny-en-de")
    assert notes == []
    card = ModelCard(text)
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["language"] == ["en", "de"]
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "translation"
    assert data["metrics"] == ["bleu", "chrf"]
    assert "translation" in data["tags"]
    # The built-in corpus is not a Hub dataset: no `datasets` entry linking to a page that does not exist.
    assert "datasets" not in data

    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "tiny-en-de"
    found = {(r.dataset_split, r.metric_type): (r.metric_value, r.metric_config) for r in results}
    assert found == {
        ("test_help", "bleu"): (21.14, BLEU_SIGNATURE),
        ("test_help", "chrf"): (50.48, CHRF_SIGNATURE),
        ("test_dictionary", "bleu"): (4.87, BLEU_SIGNATURE),
        ("test_dictionary", "chrf"): (25.5, CHRF_SIGNATURE),
    }
    assert {r.task_type for r in results} == {"translation"}

    # The body: scores with the copy baseline, the signature, provenance with licences, loading, citation.
    assert "| `test_help` | 1 | **21.1** | 50.5 | 3.8 | 20.3 |" in card.text
    assert f"BLEU signature `{BLEU_SIGNATURE}`" in card.text
    assert "MPL-2.0" in card.text and "GPL-2.0-or-later" in card.text and "`1.9-6`" in card.text
    assert "Open the file. → Öffnen Sie die Datei." in card.text
    assert 'model="someone/tiny-en-de", trust_remote_code=True' in card.text
    assert 'pipeline("translation"' in card.text and "import vaswani_hf" in card.text
    assert "@inproceedings{vaswani2017attention" in card.text
    assert "| 12 | 1.50 | 48,000 | 0.5 | 1,600 |" in card.text
    assert (run_dir / "run_config.yaml").read_text().splitlines()[0] in card.text


def test_departures_list_every_difference_from_the_paper(model_dir, dataset_card, tmp_path):
    inputs = load_card_inputs(model_dir, make_run(tmp_path, model_dir), dataset_card=dataset_card)
    departures = paper_departures(inputs.config, inputs.run_config, inputs.generation_config, inputs.data)
    found = {d.key: (d.paper, d.value) for d in departures.from_paper}
    assert found["d_model"] == (512, 16)
    assert found["norm_first"] == (False, True)
    assert found["encoder_layers"] == (6, 2)
    assert found["vocab_size"] == (37000, inputs.config["vocab_size"])
    assert found["train.update_tokens"] == (25000, 2000)
    assert found["train.warmup_steps"] == (4000, 400)
    assert found["train.mixed_precision"] == ("no", "auto")
    assert found["checkpoint.average_last"] == (5, 3)
    assert found["data.corpus"][1].startswith("vaswani_hf built-in English-German corpus")
    # The tiny model has no dropout departure, so none is listed; token ids are not a departure from the paper.
    assert "dropout" not in found and "pad_token_id" not in found
    other = {d.key for d in departures.other}
    assert {"output_dir", "model.attn_implementation", "train.max_tokens"} <= other
    assert other.isdisjoint(found)

    text = render_model_card(inputs)
    assert "| `norm_first` | false | true |" in text
    assert "| `train.update_tokens` | 25,000 | 2,000 |" in text


def test_a_paper_faithful_run_has_no_departures():
    config = VaswaniConfig.base().to_dict()
    run = RunConfig.load("base", ["data.corpus=hub:wmt14:de-en"])
    assert paper_departures(config, run, dict(PAPER_DECODING)).from_paper == []

    greedy = paper_departures(config, run, {**PAPER_DECODING, "num_beams": 1}).from_paper
    assert [(d.key, d.paper, d.value) for d in greedy] == [("generation.num_beams", 4, 1)]
    learned = paper_departures({**config, "position_embedding_type": "learned"}, run, dict(PAPER_DECODING))
    assert [d.key for d in learned.from_paper] == ["position_embedding_type"]
    big = paper_departures(VaswaniConfig.big().to_dict(), RunConfig.load("big", ["data.corpus=hub:wmt14:de-en"]), None)
    # Compared with the big preset, the big model departs only in having no saved decoding.
    assert {d.key for d in big.from_paper} == {f"generation.{key}" for key in PAPER_DECODING}


def test_a_model_of_another_type_lists_its_own_settings(tmp_path, dataset_card):
    """A MarianMTModel trained by the same recipe: its config is listed, not compared with Table 3; the network is
    the first departure; it loads with transformers alone, so the card shows no remote code."""
    marian_dir = save_tiny_marian(tmp_path / "marian", CORPUS)
    run_dir = make_run(tmp_path, marian_dir, "model.architecture=marian", results=MAIN_JOB_RESULTS)

    inputs = load_card_inputs(marian_dir, run_dir, dataset_card=dataset_card)
    assert not inputs.paper_model and inputs.code_files == []
    departures = paper_departures(inputs.config, inputs.run_config, inputs.generation_config, inputs.data)
    assert (departures.from_paper[0].key, departures.from_paper[0].value) == ("model", "MarianMTModel")
    assert not {"d_model", "encoder_layers", "vocab_size"} & {d.key for d in departures.from_paper}

    text = render_model_card(inputs)
    card = check_model_card(text)
    assert "custom_code" not in card.data.tags and "marian" in card.data.tags
    assert "A `MarianMTModel` encoder-decoder (model type `marian`)" in text
    assert "| `d_model` | 16 |" in text and "| `encoder_ffn_dim` | 32 |" in text
    assert "trust_remote_code" not in text and "Table 3 does not describe this network" in text
    assert "| `model` | the Transformer (§3) | MarianMTModel | the network (§3) |" in text


def test_scores_from_evaluate_model_folders(model_dir, tmp_path):
    run_dir = make_run(tmp_path, model_dir, "data.corpus=data/train", summary=False)
    decoding = {**PAPER_DECODING, "num_beams": 1, "max_new_tokens": 20}
    test_set = dict(test_set="newstest2014.en", split=None)
    (run_dir / "eval" / "newstest").mkdir(parents=True)
    (run_dir / "eval" / "newstest" / "scores.json").write_text(
        json.dumps(scores(12.5, 40.25, num_sentences=3003, model=str(model_dir), decoding=decoding, **test_set))
    )
    (run_dir / "eval" / "copy").mkdir()
    (run_dir / "eval" / "copy" / "scores.json").write_text(json.dumps(scores(1.0, 9.0, model=None, **test_set)))
    text, notes = make_model_card(run_dir / "model", data_license="CC-BY-4.0")
    assert any("train_summary.json" in note for note in notes)
    _, results = model_index_to_eval_results(ModelCard(text).data.to_dict()["model-index"])
    assert {(r.dataset_split, r.metric_type, r.metric_value) for r in results} == {
        ("newstest", "bleu", 12.5),
        ("newstest", "chrf", 40.25),
    }
    # The copy-the-source scores of the same test set are its baseline, not a result of the model.
    assert "| `newstest` | 3,003 | **12.5** | 40.2 | 1.0 | 9.0 |" in text
    assert "decoding of `newstest`: greedy, at most 20 new tokens" in text
    assert "Licence of the data: CC-BY-4.0" in text
    # No training summary: its table is left out rather than filled with blanks.
    assert "`train_summary.json`" not in text


def test_missing_scores_leave_results_and_model_index_out(model_dir, dataset_card, tmp_path):
    run_dir = make_run(tmp_path, model_dir)
    text, notes = make_model_card(run_dir / "model", dataset_card=dataset_card)
    assert any("no test scores" in note and "vaswani-evaluate" in note for note in notes)
    data = check_model_card(text).data.to_dict()
    assert "model-index" not in data and "metrics" not in data
    assert "## Results" not in text
    assert "## Departures from the paper" in text and "## Citation" in text


def test_missing_inputs_are_errors_that_say_what_to_do(model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run_config.yaml is missing.*--run-dir"):
        load_card_inputs(model_dir, tmp_path / "not-a-run")
    with pytest.raises(FileNotFoundError, match=r"config.json is missing.*save_pretrained"):
        load_card_inputs(tmp_path, tmp_path)
    run_dir = make_run(tmp_path, model_dir)
    with pytest.raises(FileNotFoundError, match=r"dataset card .* is missing.*vaswani-corpus"):
        load_card_inputs(model_dir, run_dir, dataset_card=tmp_path / "no-card.md")
    config = RunConfig.load(run_dir / "run_config.yaml", ["data.corpus=data/train"])
    (run_dir / "run_config.yaml").write_text(config.to_yaml())
    (run_dir / "results.json").write_text(json.dumps({"test": {"test_help": {"bleu": 1.0}}}))
    with pytest.raises(ValueError, match="lack chrf, bleu_signature, chrf_signature"):
        load_card_inputs(model_dir, run_dir)


def test_check_model_card_rejects_bad_metadata():
    with pytest.raises(ValueError, match="no YAML metadata block"):
        check_model_card("# A card without metadata\n")
    broken_index = "---\nlicense: mit\nmodel-index:\n- name: m\n  results:\n  - metrics: []\n---\n# Card\n"
    with pytest.raises(ValueError, match="model_index"):
        check_model_card(broken_index)
    assert check_model_card("---\nlicense: mit\n---\n# Card\n").data.license == "mit"


def test_script_writes_the_card_atomically(model_dir, dataset_card, tmp_path, capsys):
    run_dir = make_run(tmp_path, model_dir, results=MAIN_JOB_RESULTS)
    script = importlib.import_module("vaswani_hf.cli.model_card")
    output = tmp_path / "cards" / "README.md"
    assert script.main([str(run_dir / "model"), "--dataset-card", str(dataset_card), "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == make_model_card(run_dir / "model", dataset_card=dataset_card)[0]
    assert [path.name for path in output.parent.iterdir()] == ["README.md"]  # no temporary file left behind
    assert script.main([str(model_dir), "--run-dir", str(tmp_path / "nothing")]) == 1
    assert "run_config.yaml is missing" in capsys.readouterr().err


def test_committed_main_job_card_matches_its_results():
    """model_cards/main-job/README.md parses and reports exactly the scores of model_cards/main-job/results.json."""
    card = check_model_card((ROOT / "model_cards" / "main-job" / "README.md").read_text(encoding="utf-8"))
    recorded = json.loads((ROOT / "model_cards" / "main-job" / "results.json").read_text(encoding="utf-8"))
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    expected = {
        (split, metric): round(values[metric], 2)
        for split, values in recorded["test"].items()
        for metric in ("bleu", "chrf")
    }
    assert found == expected
