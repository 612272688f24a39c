"""Shared fixtures and helpers of the tests.

One test file per package module: `test_<module>.py` for a module at the top of the package (`test_evaluation.py`
tests `vaswani_hf/evaluation.py`), `test_<subpackage>_<module>.py` for one inside a subpackage (`test_training_loss.py`
tests `vaswani_hf/training/loss.py`, `test_cli_train.py` the `vaswani-train` command of `vaswani_hf/cli/train.py`,
end to end through the loop it runs, `vaswani_hf/training/loop.py`).
The suites that cut across modules keep names of their own: `test_bad_inputs.py` (inputs as users give them),
`test_save_faults.py` (failed and refused writes), `test_fault_suite.py` (slow: multi-process runs killed and resumed),
`test_readme.py` (the snippets of the README and docs), `test_loading.py` (saved directories loaded every way),
`test_precision.py` (fp32, bf16 and fp16 end to end), `test_accelerate_configs.py` (the shipped launch configs),
`test_transformers_common.py` and `test_transformers_common_rnn.py` (transformers' own model tests on each model),
`test_copies.py` (the `# Copied from` copies of the model files) and `test_layout.py` (the module map's import rule).
A fixture or helper that two test files need lives here; `toy_task.py` (the trained toy model's task) and
`train_runs.py` (`vaswani-train` in its own process) are the shared helper modules.

Here: tiny configurations that run in milliseconds on a CPU, a Python without this package, fake Debian packages of
the default corpus, word-by-word translation pairs with their tokenizer and model, and concurrent runs of the
evaluate and translate commands on a tiny saved model.
"""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from vaswani_hf import RNNConfig, VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe


@pytest.fixture(autouse=True, scope="session")
def package_cache(tmp_path_factory):
    """The package's cache (the default corpus, prepared corpora) in a folder of the session's, for this process and
    the commands it starts: the suite never writes into the user's cache."""
    folder = tmp_path_factory.mktemp("vaswani_hf_cache")
    previous = os.environ.get("VASWANI_HF_CACHE")
    os.environ["VASWANI_HF_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("VASWANI_HF_CACHE", None)
    else:
        os.environ["VASWANI_HF_CACHE"] = previous


TINY = dict(
    vocab_size=64,
    d_model=16,
    d_ff=32,
    num_heads=2,
    encoder_layers=2,
    decoder_layers=2,
    dropout=0.0,
    max_position_embeddings=32,
)


class FakeAccelerator:
    """What CheckpointManager needs of an Accelerator in one process; `error` is raised after the weights are
    written, as a full disk fails a write half-way through save_state."""

    is_main_process = True
    num_processes = 1

    def __init__(self, error=None):
        self.error = error

    def wait_for_everyone(self):
        pass

    def save_state(self, directory, safe_serialization=True):
        from safetensors.torch import save_file

        save_file({"w": torch.ones(2)}, os.path.join(directory, "model.safetensors"))
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread than on two, and much faster on a busy machine: a module marked with
    `pytestmark = pytest.mark.usefixtures("one_thread")` runs on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config():
    """Factory: `tiny_config(**overrides)` gives a fresh tiny VaswaniConfig (dropout 0, 2+2 layers, d_model 16)."""

    def make(**overrides) -> VaswaniConfig:
        return VaswaniConfig(**{**TINY, **overrides})

    return make


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A word-for-word English-German toy corpus (`train.jsonl`) and a BPE tokenizer trained on it, for training runs
    (`train_runs.py`)."""
    from train_runs import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="session")
def trained_toy_model():
    """The tiny model trained on `toy_task` (reverse 3 to 8 words), once per session; copy it before changing it."""
    from toy_task import train_toy_model

    return train_toy_model()


@pytest.fixture
def run_without_package(tmp_path):
    """Runs Python code in a fresh process where `vaswani_hf` cannot be imported, as for a user who only has
    transformers; offline, with its own remote-code module cache. Returns the finished process."""

    def run(code: str, *args: str) -> subprocess.CompletedProcess:
        script = tmp_path / "without_package.py"
        script.write_text('import sys\nsys.modules["vaswani_hf"] = None\n' + code)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
        return subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )

    return run


# Loads a saved folder every way a user without the package can (trust_remote_code), and reports what it got: argv is
# the folder, the report file, the thread count, the sentences joined with "|", and max_new_tokens of the pipeline.
REMOTE_LOAD_SCRIPT = """
import json, sys
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

path, report_path, threads, sentences, max_new_tokens = sys.argv[1:6]
# The thread count of the process that compares: beam search on a random model meets near-ties, which the rounding of
# another thread split could break the other way.
torch.set_num_threads(int(threads))
sentences = sentences.split("|")
try:
    import vaswani_hf
    raise SystemExit("vaswani_hf should not be importable here")
except ImportError:
    pass
try:
    pipeline("translation", model=path)
    raise SystemExit("loading remote code without trust_remote_code should fail")
except ValueError as error:
    refused = "trust_remote_code" in str(error)
tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True)
translator = pipeline("translation", model=path, trust_remote_code=True)
batch = tokenizer(sentences, padding=True, return_tensors="pt")
report = {
    "refused_without_trust": refused,
    "config_class": type(AutoConfig.from_pretrained(path, trust_remote_code=True)).__name__,
    "model_class": type(model).__name__,
    "model_module": type(model).__module__,
    "base_class": type(AutoModel.from_pretrained(path, trust_remote_code=True)).__name__,
    "pipeline_module": type(translator).__module__,
    "generated": model.generate(**batch).tolist(),
    "translations": translator(sentences + [""], max_new_tokens=int(max_new_tokens)),
    "num_beams": model.generation_config.num_beams,
    "length_penalty_type": getattr(model.generation_config, "length_penalty_type", None),
}
with open(report_path, "w") as f:
    json.dump(report, f)
"""


def load_without_package(run_without_package, path: Path, sentences: list[str], max_new_tokens: int) -> dict:
    """What `REMOTE_LOAD_SCRIPT` reports for the saved folder `path`, run where `vaswani_hf` cannot be imported."""
    report_file = path.parent / f"{path.name}-remote-report.json"
    threads = str(torch.get_num_threads())
    result = run_without_package(
        REMOTE_LOAD_SCRIPT, str(path), str(report_file), threads, "|".join(sentences), str(max_new_tokens)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(report_file.read_text())


# ---------------------------------------------------------------------------------------------------------------------
# Lengths of translation pairs (token batching and the update plan)
# ---------------------------------------------------------------------------------------------------------------------
def pair_lengths(n=500, seed=0) -> tuple[list[int], list[int]]:
    """Source and target lengths of `n` pairs: sources of 2 to 59 tokens, targets within 5 tokens of them."""
    rng = np.random.default_rng(seed)
    src = rng.integers(2, 60, n)
    tgt = np.clip(src + rng.integers(-5, 6, n), 2, None)
    return src.tolist(), tgt.tolist()


# ---------------------------------------------------------------------------------------------------------------------
# Fake Debian packages for the default corpus (vaswani_hf.data.default_corpus and vaswani-corpus): no apt
# ---------------------------------------------------------------------------------------------------------------------
CORPUS_PACKAGE_VERSIONS = {
    "libreoffice-help-en-us": "4:7.4.7-1",
    "libreoffice-help-de": "4:7.4.7-1",
    "trans-de-en": "1.9-6",
}
FAKE_DING_SENTENCES = [(f"Satz Nummer {i} ist hier.", f"Sentence number {i} is here.") for i in range(8)]


def help_page(lang: str, body: str) -> str:
    """A LibreOffice help page in `lang` around the HTML `body`."""
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>t</title></head>\n'
        f'<body><header id="TopLeftHeader"><p dir="auto">Help</p></header>\n<div id="DisplayArea">\n{body}\n'
        "</div></body></html>\n"
    )


def write_help_pages(root, pages: dict[str, list[tuple[str, str, str]]], *, de_missing_pages=()):
    """Writes the two language folders of a fake help: for each page path, units (id, English, German)."""
    for lang, folder in (("en", "en-US"), ("de", "de")):
        for doc, units in pages.items():
            if lang == "de" and doc in de_missing_pages:
                continue
            path = root / folder / doc
            path.parent.mkdir(parents=True, exist_ok=True)
            body = "\n".join(f'<p id="{uid}">{en if lang == "en" else de}</p>' for uid, en, de in units if uid)
            path.write_text(help_page(lang, body), encoding="utf-8")
    return root / "en-US", root / "de"


def help_bucket(doc: str) -> int:
    return int(hashlib.sha1(doc.encode()).hexdigest(), 16) % 100


def help_docs_in(buckets: range, count: int) -> list[str]:
    """Page paths whose hash sends them to the given buckets."""
    found = [f"text/shared/page{i}.html" for i in range(5000) if help_bucket(f"text/shared/page{i}.html") in buckets]
    return found[:count]


def write_corpus_packages(root):
    """A fake unpacked package tree: help pages landing in every split, and a small Ding file."""
    from vaswani_hf.data import default_corpus

    validation, test = help_docs_in(range(0, 3), 2), help_docs_in(range(3, 7), 2)
    train = help_docs_in(range(7, 100), 3)
    pages = {doc: [(f"p{i}", f"Train {doc} {i}.", f"Training {doc} {i}.") for i in range(3)] for doc in train}
    for doc in validation + test:
        pages[doc] = [(f"p{i}", f"Held {doc} {i}.", f"Gehalten {doc} {i}.") for i in range(2)]
    # A shared label, on a train and a test page: leaks into train unless removed.
    pages[train[0]].append(("shared", "Example:", "Beispiel:"))
    pages[test[0]].append(("shared", "Example:", "Beispiel:"))
    # The same German on a train page with other English: removed from train too.
    pages[train[1]].append(("de_only", "Sample:", "Beispiel:"))
    # A duplicate pair within train, on two train pages.
    pages[train[1]].append(("dup", "Duplicate.", "Duplikat."))
    pages[train[2]].append(("dup", "Duplicate.", "Duplikat."))
    write_help_pages(root / default_corpus.HELP_DIR, pages)
    ding = root / default_corpus.DING_FILE
    ding.parent.mkdir(parents=True)
    ding.write_text("".join(f"Wort {{n}} | {de} :: word | {en}\n" for de, en in FAKE_DING_SENTENCES), encoding="utf-8")
    return {"train": train, "validation": validation, "test": test}


@pytest.fixture
def small_ding_splits(monkeypatch):
    """Holds 2 dictionary sentences out for the test split and 1 for validation."""
    from vaswani_hf.data import default_corpus

    monkeypatch.setattr(default_corpus, "DING_TEST_SENTENCES", 2)
    monkeypatch.setattr(default_corpus, "DING_VALIDATION_SENTENCES", 1)


@pytest.fixture
def fake_corpus_fetch(monkeypatch, small_ding_splits):
    """Replaces the apt download of the default corpus with writing the fake packages; returns the list of calls."""
    from vaswani_hf.data import default_corpus

    calls = []

    def fetch(dest):
        calls.append(dest)
        write_corpus_packages(dest)
        return dict(CORPUS_PACKAGE_VERSIONS)

    monkeypatch.setattr(default_corpus, "fetch_packages", fetch)
    return calls


# ---------------------------------------------------------------------------------------------------------------------
# Word-by-word translation pairs, their BPE tokenizer and tiny models (fine-tuning and vaswani-finetune)
# ---------------------------------------------------------------------------------------------------------------------
WORD_PAIRS_EN = "the a house cat dog tree sleeps is small big red green runs over under and".split()
WORD_PAIRS_DE = "das ein Haus Katze Hund Baum schläft ist klein groß rot grün läuft über unter und".split()
WORD_PAIRS_POSITIONS = 128  # room for a source of 30 tokens plus 50 generated ones


def word_pairs(lengths: list[int], seed: int = 0) -> list[dict]:
    """Word-by-word "translations" with `lengths` words each, as rows of a `translation` column."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for length in lengths:
        words = torch.randint(len(WORD_PAIRS_EN), (length,), generator=generator).tolist()
        rows.append(
            {
                "translation": {
                    "en": " ".join(WORD_PAIRS_EN[w] for w in words),
                    "de": " ".join(WORD_PAIRS_DE[w] for w in words),
                }
            }
        )
    return rows


@pytest.fixture(scope="session")
def word_pairs_tokenizer():
    """A shared BPE of 80 tokens trained on `word_pairs`."""
    texts = [text for row in word_pairs([3] * 40) for text in row["translation"].values()]
    return train_shared_bpe(texts, vocab_size=80, min_frequency=1)


@pytest.fixture
def make_word_pairs_model(tiny_config, word_pairs_tokenizer):
    """Factory: `make_word_pairs_model(seed)` gives a tiny random model for `word_pairs_tokenizer`, with
    `WORD_PAIRS_POSITIONS` positions."""

    def make(seed: int = 0) -> VaswaniForConditionalGeneration:
        torch.manual_seed(seed)
        return VaswaniForConditionalGeneration(
            tiny_config(vocab_size=len(word_pairs_tokenizer), max_position_embeddings=WORD_PAIRS_POSITIONS)
        )

    return make


# ---------------------------------------------------------------------------------------------------------------------
# vaswani-evaluate and vaswani-translate in their own processes, on a tiny saved model
# ---------------------------------------------------------------------------------------------------------------------
SCRIPT_PAIRS = [
    ("the house is small", "das Haus ist klein"),
    ("the cat sleeps on the mat", "die Katze schläft auf der Matte"),
    ("", ""),
    ("a dog runs", "ein Hund läuft"),
]
SCRIPT_SOURCES = [source for source, _ in SCRIPT_PAIRS]
FAST_DECODING = dict(num_beams=1, max_new_tokens=5)
FAST_DECODING_ARGS = ["--num-beams", "1", "--max-new-tokens", "5", "--no-progress"]


@dataclass
class ScriptRuns:
    """The inputs the scripts ran on, and their finished processes by name."""

    root: Path
    model_dir: Path
    processes: dict[str, subprocess.CompletedProcess]

    def translations(self, sentences: list[str]) -> list[str]:
        """What `translate` gives in this process with the saved model and the FAST_DECODING."""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from vaswani_hf.evaluation import translate

        model = AutoModelForSeq2SeqLM.from_pretrained(self.model_dir)
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        return translate(model, tokenizer, sentences, **FAST_DECODING)


def save_tiny_model(path: Path) -> Path:
    """A tiny random model and a BPE trained on `SCRIPT_PAIRS`, saved in `path`."""
    tokenizer = train_shared_bpe([text for pair in SCRIPT_PAIRS for text in pair], vocab_size=80, min_frequency=1)
    torch.manual_seed(0)
    # max_position_embeddings leaves room for the paper's limit of source length + 50 output tokens.
    config = VaswaniConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        d_ff=32,
        num_heads=2,
        encoder_layers=2,
        decoder_layers=2,
        max_position_embeddings=80,
    )
    VaswaniForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_scripts(root: Path, model_dir: Path, calls: dict) -> ScriptRuns:
    """Runs the command line calls `{name: ([command, *args], working folder, stdin text or None)}` all at once, as
    `python -m vaswani_hf.cli.<command>`: each process spends most of its time importing torch and transformers, so
    running them side by side keeps a test file fast."""
    # One thread each: the model is tiny, and several processes each spinning threads on a few cores slow every one.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"vaswani_hf.cli.{command}", *map(str, args)],
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=cwd,
        )
        for name, ((command, *args), cwd, stdin) in calls.items()
    }
    processes = {}
    try:
        for name, process in running.items():
            stdout, stderr = process.communicate(input=calls[name][2], timeout=300)
            processes[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return ScriptRuns(root=root, model_dir=model_dir, processes=processes)


def finished(runs: ScriptRuns, name: str) -> subprocess.CompletedProcess:
    """The process `name`, which must have succeeded."""
    process = runs.processes[name]
    assert process.returncode == 0, process.stderr
    return process


def tiny_rnn_config(cell="gru", attention="additive", bidirectional=True, **overrides) -> RNNConfig:
    """A tiny RNNConfig of one form; the GRU forms stack 2 encoder layers over 1 decoder layer, the LSTM forms 1 over 2."""
    layers = dict(encoder_layers=2, decoder_layers=1) if cell == "gru" else dict(encoder_layers=1, decoder_layers=2)
    return RNNConfig(
        **{
            **dict(vocab_size=24, hidden_size=8, embedding_size=6, dropout=0.0, **layers),
            **dict(cell=cell, attention=attention, bidirectional=bidirectional),
            **overrides,
        }
    )


def save_tiny_marian(path: Path, texts: list[str]) -> Path:
    """A tiny random MarianMTModel, as `model.architecture=marian` trains one, and a BPE trained on `texts`, saved in
    `path`."""
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    tokenizer = train_shared_bpe(texts, vocab_size=80)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )  # fmt: skip
    MarianMTModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
