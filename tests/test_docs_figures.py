"""The figures that README and docs/ quote equal the committed results files they come from.

Each claim is a sentence or table row of a page with its figures as `{}` placeholders, the results file, and how to
compute each figure from the file. The test formats the claim from the file and requires the page (with its line
breaks read as spaces) to hold it: a changed results file, or a page edited by hand, fails here until the two agree.
"""

import json
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

from vaswani_hf.benchmarks import translation as benchmark_translation
from vaswani_hf.studies.recurrence import render_markdown, render_verdicts, verdicts

ROOT = Path(__file__).resolve().parent.parent
MAIN_JOB = "model_cards/main-job/results.json"
TRANSLATION = "docs/benchmarks/translation-cpu.json"
STUDY = "docs/figures/recurrence/study.json"
COMMON = "docs/benchmarks/common-tests.json"
PADDING = "docs/benchmarks/padding.json"
# The main job of the preset's tuning, on an Intel CPU with AMX (bf16), before results files recorded provenance.
TUNED = "docs/benchmarks/main-job-tuned-results.json"


@cache
def load(path: str):
    return json.loads((ROOT / path).read_text())


@cache
def page_text(page: str) -> str:
    return re.sub(r"\s+", " ", (ROOT / page).read_text())


def thousands(value) -> str:
    return f"{round(value):,}"


def millions(value) -> str:
    return f"{value / 1e6:.1f}M"


def padding(name: str) -> str:
    return f"{load(PADDING)['batchings'][name]['padding_share']:.1%}"


def row(path: str, run: str) -> dict:
    return next(r for r in load(path)["rows"] if r["run"] == run)


def seconds(run: str) -> float:
    return row(TRANSLATION, run)["seconds"]


def model(name: str) -> dict:
    return load(STUDY)["models"][name]


def tokens_per_s(results: str) -> float:
    train = load(results)["train"]
    return train["target_tokens"] / (train["train_minutes"] * 60)


MJ = lambda: load(MAIN_JOB)  # noqa: E731

# (page, claim with {} placeholders, figures as functions of nothing, each returning the formatted string)
CLAIMS = [
    # README: the main job's results
    (
        "README.md",
        "| this model, averaged, beam 4 | **BLEU {}**, chrF {} | BLEU {}, chrF {} |",
        [
            lambda s=s, m=m: f"{MJ()['test'][s][m]:.1f}"
            for s in ("test_help", "test_dictionary")
            for m in ("bleu", "chrf")
        ],
    ),
    (
        "README.md",
        "| copying the source | BLEU {}, chrF {} | BLEU {}, chrF {} |",
        [
            lambda s=s, m=m: f"{MJ()['copy_baseline'][s][m]:.1f}"
            for s in ("test_help", "test_dictionary")
            for m in ("bleu", "chrf")
        ],
    ),
    (
        "README.md",
        "trained for {} minutes of update time ({} updates of at least 2,000 target tokens, {}M target tokens, {} "
        "epochs, about {} target tokens/s in two single-threaded processes, in {}: `train.mixed_precision=auto` does "
        "not emulate bf16), the last 3 checkpoints (2 minutes apart) averaged, with transformers {}.",
        [
            lambda: f"{MJ()['train']['train_minutes']:.1f}",
            lambda: thousands(MJ()["train"]["updates"]),
            lambda: f"{MJ()['train']['target_tokens'] / 1e6:.2f}",
            lambda: f"{MJ()['train']['epochs']:.1f}",
            lambda: thousands(tokens_per_s(MAIN_JOB)),
            lambda: {"no": "fp32", "bf16": "bf16"}[MJ()["train"]["mixed_precision"]],
            lambda: MJ()["provenance"]["versions"]["transformers"],
        ],
    ),
    (
        "README.md",
        "Scoring the two test splits took {} seconds",
        [lambda: f"{sum(MJ()['test'][s]['seconds'] for s in ('test_help', 'test_dictionary')):.0f}"],
    ),
    ("README.md", "the whole job took {} minutes (`wall_minutes`)", [lambda: f"{MJ()['wall_minutes']:.1f}"]),
    (
        "README.md",
        "Measured with `bash scripts/main_job.sh` on a {}-core {} without bf16 instructions",
        [lambda: str(MJ()["provenance"]["cpu"]["cores"]), lambda: MJ()["provenance"]["cpu"]["model"]],
    ),
    # README: speed
    (
        "README.md",
        "takes {} s with vaswani_hf on the Intel CPU with AMX",
        [lambda: f"{seconds('vaswani_hf:fp32:gnmt'):.1f}"],
    ),
    (
        "README.md",
        "(Marian's length penalty: {} s, the same {} translations), a `MarianMTModel` decoded the transformers way "
        "takes {} s (**{}x**) and CTranslate2 fp32 {} s ({}x); bf16 takes {} s",
        [
            lambda: f"{seconds('vaswani_hf:fp32:power'):.1f}",
            lambda: thousands(row(TRANSLATION, "marian:fp32")["identical_to_reference"]),
            lambda: f"{seconds('marian:fp32'):.1f}",
            lambda: f"{seconds('marian:fp32') / seconds('vaswani_hf:fp32:gnmt'):.1f}",
            lambda: f"{seconds('ctranslate2:fp32'):.1f}",
            lambda: f"{seconds('ctranslate2:fp32') / seconds('vaswani_hf:fp32:gnmt'):.1f}",
            lambda: f"{seconds('vaswani_hf:bf16:gnmt'):.1f}",
        ],
    ),
    (
        "README.md",
        "single runs of the code before the change made {} and {} target tokens/s (pre-norm and post-norm), one run "
        "after it {}.",
        [
            lambda: thousands(tokens_per_s("docs/benchmarks/main-job-8c3714e-results.json")),
            lambda: thousands(tokens_per_s("docs/benchmarks/main-job-postnorm-results.json")),
            lambda: thousands(tokens_per_s("docs/benchmarks/main-job-unchanged-preset-results.json")),
        ],
    ),
    (
        "README.md",
        "its help-test BLEU went from {} to {} in the same 20 minutes",
        [
            lambda: f"{load('docs/benchmarks/main-job-8c3714e-results.json')['test']['test_help']['bleu']:.1f}",
            lambda: f"{load(TUNED)['test']['test_help']['bleu']:.1f}",
        ],
    ),
    # docs/studies.md: the recurrence study's discussion (its tables are render_markdown's, checked below)
    (
        "docs/studies.md",
        "and {} minutes each, the recurrent models translate: the GRU with attention reaches {} test BLEU against the "
        "Transformer's {}, and the GRU without attention {}. The trainings continued those of a study of {} minutes "
        "per model",
        [
            lambda: f"{load(STUDY)['settings']['minutes']:g}",
            lambda: f"{model('rnn_attention')['test']['bleu']:.1f}",
            lambda: f"{model('transformer')['test']['bleu']:.1f}",
            lambda: f"{model('rnn_no_attention')['test']['bleu']:.1f}",
            lambda: ", ".join(f"{m:g}" for m in load(STUDY)["earlier_minutes"]),
        ],
    ),
    # docs/training.md: the rnn-cpu preset as it is (the study's search tries it as its `eq3` candidate)
    (
        "docs/training.md",
        "`small-cpu`'s Transformer ({} parameters against {})",
        [
            lambda: millions(load(STUDY)["search"]["rnn_attention"]["candidates"]["eq3"]["parameters"]),
            lambda: millions(model("transformer")["parameters"]),
        ],
    ),
    (
        "README.md",
        "a shared BPE of 8,000 ({} parameters)",
        [lambda: millions(model("transformer")["parameters"])],
    ),
    # docs/trainer.md: padding of each batching
    (
        "docs/trainer.md",
        "{} of the positions of `vaswani-train`'s batches are padding, against {} of batches of 32 sentences in random "
        "order (the script above) and {} with `group_by_length=True`",
        [
            lambda: padding("vaswani-train: token buckets"),
            lambda: padding("Trainer: 32 sentences, random order"),
            lambda: padding("Trainer: 32 sentences, group_by_length"),
        ],
    ),
    # docs/speed.md
    (
        "docs/speed.md",
        "bf16 is {} times as fast as fp32",
        [lambda: f"{seconds('vaswani_hf:fp32:gnmt') / seconds('vaswani_hf:bf16:gnmt'):.2f}"],
    ),
    (
        "docs/speed.md",
        "vaswani_hf is {} times as fast as the Marian path in fp32 (target: 2x) and {} times in bf16, and {} times as "
        "fast as CTranslate2 fp32",
        [
            lambda: f"{seconds('marian:fp32') / seconds('vaswani_hf:fp32:gnmt'):.1f}",
            lambda: f"{seconds('marian:bf16') / seconds('vaswani_hf:bf16:gnmt'):.1f}",
            lambda: f"{seconds('ctranslate2:fp32') / seconds('vaswani_hf:fp32:gnmt'):.2f}",
        ],
    ),
    *[
        (
            "docs/speed.md",
            f"| {run} | " + "{} | {} | {} |",
            [
                lambda run=run: f"{seconds(run):.1f}",
                lambda run=run: f"{row(TRANSLATION, run)['sentences'] / seconds(run):.1f}",
                lambda run=run: thousands(row(TRANSLATION, run)["target_tokens_per_s"]),
            ],
        )
        for run in ("vaswani_hf:fp32:power", "marian:fp32", "ctranslate2:fp32", "ctranslate2:int8", "marian:bf16")
    ],
    (
        "docs/speed.md",
        "with the small-cpu preset unchanged, {} target tokens/s before and {} after, so {} updates in its 20 minutes "
        "instead of {}, and help-test BLEU {} instead of {}.",
        [
            lambda: thousands(tokens_per_s("docs/benchmarks/main-job-8c3714e-results.json")),
            lambda: thousands(tokens_per_s("docs/benchmarks/main-job-unchanged-preset-results.json")),
            lambda: thousands(load("docs/benchmarks/main-job-unchanged-preset-results.json")["train"]["updates"]),
            lambda: thousands(load("docs/benchmarks/main-job-8c3714e-results.json")["train"]["updates"]),
            lambda: (
                f"{load('docs/benchmarks/main-job-unchanged-preset-results.json')['test']['test_help']['bleu']:.1f}"
            ),
            lambda: f"{load('docs/benchmarks/main-job-8c3714e-results.json')['test']['test_help']['bleu']:.1f}",
        ],
    ),
    (
        "docs/speed.md",
        "With it the main job makes {} updates at {} target tokens/s and scores **BLEU {}**",
        [
            lambda: thousands(load(TUNED)["train"]["updates"]),
            lambda: thousands(tokens_per_s(TUNED)),
            lambda: f"{load(TUNED)['test']['test_help']['bleu']:.1f}",
        ],
    ),
    # docs/main-job.md: the curve, row by row, and the averaged model
    *[
        (
            "docs/main-job.md",
            "| {} | {} | {} | {} |",
            [
                lambda i=i: f"{MJ()['curve'][i]['minutes']:.1f}",
                lambda i=i: str(MJ()["curve"][i]["updates"]),
                lambda i=i: f"{MJ()['curve'][i]['bleu']:.1f}",
                lambda i=i: f"{MJ()['curve'][i]['chrf']:.1f}",
            ],
        )
        for i in range(len(load(MAIN_JOB)["curve"]))
    ],
    (
        "docs/main-job.md",
        "| {}, last 3 averaged | {} | {} | {} |",
        [
            lambda: f"{MJ()['train']['train_minutes']:.1f}",
            lambda: str(MJ()["train"]["updates"]),
            lambda: f"{MJ()['test']['test_help']['bleu']:.1f}",
            lambda: f"{MJ()['test']['test_help']['chrf']:.1f}",
        ],
    ),
    *[
        ("docs/main-job.md", "- {} → {}", [lambda s=s: s, lambda s=s: MJ()["examples"][s]])
        for s in load(MAIN_JOB)["examples"]
    ],
    # docs/compatibility.md: transformers' common tests, and the precision table
    *[
        (
            "docs/compatibility.md",
            f"| {label} | " + "{} | {} | {} |",
            [lambda name=name, k=k: str(load(COMMON)["runs"][name][k]) for k in ("passed", "failed", "skipped")],
        )
        for name, label in (
            ("vaswani", "`VaswaniModel`, `VaswaniForConditionalGeneration`"),
            ("marian", "`MarianModel`, `MarianMTModel`"),
        )
    ],
    (
        "docs/compatibility.md",
        "On transformers {}, with the same harness",
        [lambda: load(COMMON)["provenance"]["versions"]["transformers"]],
    ),
    *[
        (
            "docs/compatibility.md",
            f"| {label} | " + "{} | {} |",
            [
                lambda f=f: f"{load(f'docs/precision/{f}.json')['bleu']:.2f}",
                lambda f=f: f"{load(f'docs/precision/{f}.json')['chrf']:.2f}",
            ],
        )
        for f, label in (
            ("help-test-fp32", "fp32"),
            ("help-test-bf16", "bf16"),
            ("help-test-fp16", "fp16"),
            ("help-test-fp32-oldest", "fp32, transformers 5.15.0 (`.ci/constraints-oldest.txt`)"),
        )
    ],
]

# docs/training.md: the corpus preparation benchmark, one row per run
CORPUS = "docs/benchmarks/corpus-wmt-size.json"
CORPUS_RUNS = {
    "cold": "a cold start: clean, train the BPE, tokenize",
    "second-start": "a second run on the same corpus",
    "resume": "`--resume` of the first run",
    "two-processes": "two processes, from the cache",
    "stock": "transformers' example path, cold: `datasets.map` of the tokenizer, `Seq2SeqTrainer`",
}


def table_rows(page: str, labels: dict[str, str], cells) -> list:
    """One claim per table row `| label | a | b | c |`: `cells(name)` gives the figures of run `name`."""
    return [
        (page, f"| {label} | {{}} | {{}} | {{}} |", [lambda name=name, i=i: cells(name)[i] for i in range(3)])
        for name, label in labels.items()
    ]


def corpus_cells(name: str) -> list[str]:
    run = load(CORPUS)["runs"][name]
    first, anonymous, resident = run["seconds_to_first_update"], run["peak_anonymous_mib"], run["peak_rss_mib"]
    return [f"{first:,.1f}", thousands(anonymous), thousands(resident)]


CLAIMS += table_rows("docs/training.md", CORPUS_RUNS, corpus_cells)
CLAIMS.append(
    (
        "docs/training.md",
        "On a corpus the size of WMT14 English-German ({} pairs, {} MB of text: the built-in corpus with numbered "
        "variants, built in code by `scripts/benchmark_corpus.py`), `vaswani-train --config small-cpu` on a {}-core {}:",
        [
            lambda: thousands(load(CORPUS)["corpus"]["pairs"]),
            lambda: f"{load(CORPUS)['corpus']['megabytes']:,.0f}",
            lambda: str(load(CORPUS)["provenance"]["cpu"]["cores"]),
            lambda: load(CORPUS)["provenance"]["cpu"]["model"],
        ],
    )
)


def changed_translations(dtype: str) -> int:
    """Lines of `vaswani-evaluate --dtype DTYPE`'s hypotheses that differ from fp32's (docs/precision/)."""
    read = lambda name: (ROOT / f"docs/precision/help-test-{name}.hypotheses.txt").read_text().splitlines()  # noqa: E731
    fp32, other = read("fp32"), read(dtype)
    assert len(fp32) == len(other) == load("docs/precision/help-test-fp32.json")["num_sentences"]
    return sum(a != b for a, b in zip(fp32, other, strict=True))


CLAIMS.append(
    (
        "docs/compatibility.md",
        "Against fp32, bf16 changes {} of the {} translations and fp16 {}; with transformers 5.15.0 the fp32 "
        "translations are {}",
        [
            lambda: str(changed_translations("bf16")),
            lambda: thousands(load("docs/precision/help-test-fp32.json")["num_sentences"]),
            lambda: str(changed_translations("fp16")),
            lambda: "identical" if changed_translations("fp32-oldest") == 0 else "different",
        ],
    )
)


# docs/speed.md: the streaming benchmark, one row per path
STREAMING = "docs/benchmarks/streaming-cpu.json"
STREAMING_RUNS = {
    "stream": "streaming (`vaswani-translate --input --output`)",
    "whole": "the whole file at once (the commands before)",
    "ctranslate2": "CTranslate2 fp32, the same windows",
}


def streaming_cells(name: str) -> list[str]:
    run = row(STREAMING, name)
    return [f"{run['first_output_seconds']:.1f}", f"{run['sentences_per_s']:.1f}", thousands(run["peak_mib"])]


CLAIMS += table_rows("docs/speed.md", STREAMING_RUNS, streaming_cells)
CLAIMS.append(
    (
        "docs/speed.md",
        "the first {} of {} lines in windows of {}:",
        [
            lambda: thousands(load(STREAMING)["lines"]),
            lambda: thousands(load(STREAMING)["file_lines"]),
            lambda: thousands(load(STREAMING)["window"]),
        ],
    )
)


# docs/speed.md and the README: the batch sizes of decoding and their memory
MEMORY = "docs/benchmarks/translation-memory-cpu.json"
WEAK_MODEL = "docs/benchmarks/main-job-postnorm-15min-results.json"


def memory_row(run: str) -> dict:
    return row(MEMORY, run)


def times_marian(run: str) -> str:
    return f"{memory_row('marian:fp32')['seconds'] / memory_row(run)['seconds']:.2f}"


def differing(run: str) -> str:
    return thousands(memory_row(run)["sentences"] - memory_row(run)["identical_to_reference"])


MEMORY_TARGET = (
    "At the default of 4,096 tokens, decoding peaked at {} MiB against {} MiB for Marian's batches of 32, at {} times "
    "Marian's speed (target: at Marian's peak memory or less, at least twice its speed)."
)
CLAIMS += [
    (
        page,
        MEMORY_TARGET,
        [
            lambda: thousands(memory_row("vaswani_hf:fp32:gnmt")["peak_mib"]),
            lambda: thousands(memory_row("marian:fp32")["peak_mib"]),
            lambda: times_marian("vaswani_hf:fp32:gnmt"),
        ],
    )
    for page in ("docs/speed.md", "README.md")
]
CLAIMS += [
    (
        "docs/speed.md",
        "8,192 tokens were {} faster than the default and took {} MiB; 2,048 tokens took {} MiB at {} times Marian's "
        "speed.",
        [
            lambda: (
                f"{memory_row('vaswani_hf:fp32:gnmt')['seconds'] / memory_row('vaswani_hf:fp32:gnmt@8192')['seconds'] - 1:.0%}"
            ),
            lambda: thousands(memory_row("vaswani_hf:fp32:gnmt@8192")["peak_mib"]),
            lambda: thousands(memory_row("vaswani_hf:fp32:gnmt@2048")["peak_mib"]),
            lambda: times_marian("vaswani_hf:fp32:gnmt@2048"),
        ],
    ),
    (
        "docs/speed.md",
        "{} updates in 15 minutes on this CPU reach BLEU {} on the help test split; its translations are {} longer than "
        "the references",
        [
            lambda: thousands(load(WEAK_MODEL)["train"]["updates"]),
            lambda: f"{load(WEAK_MODEL)['test']['test_help']['bleu']:.1f}",
            lambda: f"{load(WEAK_MODEL)['test']['test_help']['bleu_details']['ratio'] - 1:.0%}",
        ],
    ),
    (
        "docs/speed.md",
        "Marian's and CTranslate2's translations differ from ours in {} and {} of {} sentences",
        [
            lambda: differing("marian:fp32"),
            lambda: differing("ctranslate2:fp32"),
            lambda: thousands(memory_row("marian:fp32")["sentences"]),
        ],
    ),
    (
        "docs/speed.md",
        "such batches of short sentences set the peak ({} MiB for the stream of the next section, at that default)",
        [lambda: thousands(row(STREAMING, "stream")["peak_mib"])],
    ),
    (
        "docs/speed.md",
        "The batch sizes measured on a {}-core {} without bf16 instructions",
        [lambda: str(load(MEMORY)["provenance"]["cpu"]["cores"]), lambda: load(MEMORY)["provenance"]["cpu"]["model"]],
    ),
]


def test_the_memory_table_on_the_speed_page_is_its_results_file():
    """The table is what `benchmark_translation.markdown` makes of the committed JSON, and docs/speed.md quotes it
    whole."""
    table = benchmark_translation.markdown(load(MEMORY))
    assert table == (ROOT / MEMORY).with_suffix(".md").read_text()
    assert table in (ROOT / "docs" / "speed.md").read_text()
    # What the pages say of the target.
    assert memory_row("vaswani_hf:fp32:gnmt")["peak_mib"] <= memory_row("marian:fp32")["peak_mib"]
    assert float(times_marian("vaswani_hf:fp32:gnmt")) >= 2


@pytest.mark.parametrize("page, claim, figures", CLAIMS, ids=[f"{page}:{claim[:40]}" for page, claim, _ in CLAIMS])
def test_the_page_quotes_its_results_file(page, claim, figures):
    expected = claim.format(*(figure() for figure in figures))
    assert expected in page_text(page), f"{page} should say: {expected}"


# The pages that quote no measurement of their own, each with what its numbers are instead; every other page has claims
# above. A new page must be added to one or the other.
WITHOUT_MEASUREMENTS = {
    "docs/decoding.md": "the paper's decoding constants (beam 4, alpha 0.6)",
    "docs/layout.md": "section numbers of the paper",
    "docs/publishing.md": "section numbers and the paper's decoding constants; parity is asserted by tests",
    "docs/reliability.md": "no figures: the faults tried and the tests that hold them",
    "model_cards/README.md": "no figures: how the cards are made",
    "model_cards/main-job/README.md": "generated by vaswani-model-card from main-job/results.json, whose scores "
    "tests/test_export_model_card.py compares with the card's model-index",
}


def test_every_page_is_checked_or_declared_free_of_measurements():
    pages = {"README.md", *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))}
    pages |= {str(p.relative_to(ROOT)) for p in (ROOT / "model_cards").rglob("*.md")}
    checked = {page for page, _, _ in CLAIMS}
    assert not checked & set(WITHOUT_MEASUREMENTS)
    assert pages == checked | set(WITHOUT_MEASUREMENTS), sorted(pages ^ (checked | set(WITHOUT_MEASUREMENTS)))


def results_files() -> list[str]:
    """The committed JSON results beside the pages: docs/ and model_cards/."""
    listed = subprocess.run(
        ["git", "ls-files", "docs/*.json", "model_cards/*.json"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return listed or sorted(
        str(p.relative_to(ROOT)) for d in ("docs", "model_cards") for p in (ROOT / d).rglob("*.json")
    )


def provenance_note(page: str) -> str:
    """The page's paragraph that starts with **Provenance.**, or ""."""
    found = re.search(r"\*\*Provenance\.\*\*(.*?)(?:\n\s*\n|$)", (ROOT / page).read_text(), flags=re.S)
    return re.sub(r"\s+", " ", found[1]) if found else ""


def has_provenance(path: str) -> bool:
    record = load(path).get("provenance") if isinstance(load(path), dict) else None
    return bool(
        record
        and record.get("command")
        and record.get("commit")
        and {"transformers", "torch", "accelerate"} <= set(record.get("versions") or {})
        and (record.get("cpu") or {}).get("model")
    )


def test_every_results_file_records_its_provenance_or_its_pages_say_so():
    """A results file records the command, commit, versions and CPU that made it. One measured before that record
    existed is named, on every page that cites it, in a **Provenance.** paragraph that says so."""
    files = results_files()
    assert {MAIN_JOB, TRANSLATION, STUDY, COMMON, PADDING} <= set(files)
    pages = [p for p in ("README.md", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md"))))]
    unsaid = []
    for path in files:
        if has_provenance(path):
            continue
        names = (Path(path).name, Path(path).with_suffix(".md").name)
        citing = [page for page in pages if any(name in page_text(page) for name in names)]
        assert citing, f"{path} records no provenance and no page cites it: delete it or cite it"
        unsaid += [f"{page}: {names[0]}" for page in citing if names[0] not in provenance_note(page)]
    assert not unsaid, (
        "pages citing results without provenance must name them in a **Provenance.** paragraph:\n" + "\n".join(unsaid)
    )


def test_the_recurrence_study_tables_on_the_pages_are_its_study_json():
    """docs/studies.md holds the tables and verdicts that `render_markdown` makes of the committed study.json, and the
    README its verdict table: `vaswani-study-recurrence --replot` writes them to study.md to copy."""
    report = load(STUDY)
    assert render_markdown(report) in (ROOT / "docs" / "studies.md").read_text(), (
        "docs/studies.md differs from render_markdown(study.json): copy study.md from --replot"
    )
    assert render_verdicts(report, "docs/figures/recurrence") in (ROOT / "README.md").read_text()
    assert [v["verdict"] for v in report["verdicts"]] == [v["verdict"] for v in verdicts(report)]
