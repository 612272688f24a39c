"""The training corpus a card describes: what it is, where it comes from and under which licences, read from the
run config's `data.corpus` and, for the built-in corpus, from its dataset card (`vaswani_hf.data.default_corpus`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ...data.default_corpus import CACHE_SUBDIR, default_cache_dir
from ...training.run_config import RunConfig
from .records import read_json


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
    licence = read_json(info).get("license") if info.is_file() else None
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
