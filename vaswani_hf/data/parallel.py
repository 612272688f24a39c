"""Loading and cleaning parallel corpora.

Every loader returns a ``datasets.Dataset`` with one column ``translation`` whose rows are dicts
``{src_lang: str, tgt_lang: str}``, the layout of ``datasets.load_dataset("wmt14", "de-en")``, so that
WMT data, local files and the built-in default corpus all feed the same training code.
"""

import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict, Features, Translation
from transformers import PreTrainedTokenizerFast

# The one reader of sentence files (a line ends at \n only; a byte-order mark is dropped), shared with test sets.
from ..files import iter_lines

# Rows are turned into Arrow in chunks of this size, so a multi-million-line corpus never exists as one Python list.
_CHUNK_ROWS = 100_000

# Reasons recorded per row by clean_parallel, in the order the filters apply.
_KEEP, _EMPTY, _TOO_LONG, _RATIO = 0, 1, 2, 3


def _check_langs(src_lang: str, tgt_lang: str) -> None:
    if not isinstance(src_lang, str) or not isinstance(tgt_lang, str) or not src_lang or not tgt_lang:
        raise ValueError(
            f"src_lang and tgt_lang must be non-empty strings such as 'en', got {src_lang!r}, {tgt_lang!r}"
        )
    if src_lang == tgt_lang:
        raise ValueError(f"src_lang and tgt_lang must differ, both are {src_lang!r}")


def _translation_features(src_lang: str, tgt_lang: str) -> Features:
    return Features({"translation": Translation(languages=[src_lang, tgt_lang])})


def _build(pairs: Iterable[tuple[str, str]], *, src_lang: str, tgt_lang: str, name: str) -> Dataset:
    """Turns (source, target) pairs into a translation Dataset; raises ValueError if there are none."""
    features = _translation_features(src_lang, tgt_lang)
    chunks, rows = [], []
    for src, tgt in pairs:
        rows.append({src_lang: src, tgt_lang: tgt})
        if len(rows) == _CHUNK_ROWS:
            chunks.append(Dataset.from_dict({"translation": rows}, features=features))
            rows = []
    if rows:
        chunks.append(Dataset.from_dict({"translation": rows}, features=features))
    if not chunks:
        raise ValueError(f"corpus {name} is empty: it holds no sentence pairs")
    return chunks[0] if len(chunks) == 1 else datasets.concatenate_datasets(chunks)


def _require_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist or is not a file")
    return path


def count_lines(path: str | os.PathLike) -> int:
    """The number of lines `iter_lines` gives for a file, counted on its bytes (a gigabyte in about a second)."""
    count, last = 0, b"\n"
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def iter_aligned_text(src_path: Path, tgt_path: Path) -> Iterator[tuple[str, str]]:
    """Pairs of two line-aligned text files, read as a stream: line i of one with line i of the other.

    Raises:
        ValueError: if the files have different numbers of lines, before any pair is given.
    """
    # Counted first: a mismatch found at the end of a multi-gigabyte corpus would come after all the work on it.
    src_count, tgt_count = count_lines(src_path), count_lines(tgt_path)
    if src_count != tgt_count:
        raise ValueError(
            f"the files are not line-aligned: {str(src_path)!r} has {src_count} lines but {str(tgt_path)!r} has "
            f"{tgt_count}; line i of one must translate line i of the other"
        )
    yield from zip(iter_lines(src_path), iter_lines(tgt_path), strict=True)


def read_aligned_text(
    src_path: str | os.PathLike, tgt_path: str | os.PathLike, *, src_lang: str, tgt_lang: str
) -> Dataset:
    """Reads two line-aligned plain-text files (e.g. ``train.en`` and ``train.de``), one sentence per line.

    Raises:
        FileNotFoundError: if either file is missing.
        ValueError: if the files have different numbers of lines, or hold no lines at all.
    """
    _check_langs(src_lang, tgt_lang)
    src_path = _require_file(src_path, f"{src_lang} text file")
    tgt_path = _require_file(tgt_path, f"{tgt_lang} text file")
    return _build(
        iter_aligned_text(src_path, tgt_path), src_lang=src_lang, tgt_lang=tgt_lang, name=f"{str(src_path)!r}"
    )


def read_tsv(
    path: str | os.PathLike, *, src_lang: str, tgt_lang: str, src_column: int = 0, tgt_column: int = 1
) -> Dataset:
    """Reads tab-separated sentence pairs, one pair per line, source in ``src_column`` and target in ``tgt_column``
    (0-based). Quotes are ordinary characters: real text is full of them and TSV corpora do not quote fields.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if a line has too few fields, or more than 2 with the default columns (the message gives its
            number), or the file holds no pairs.
    """
    _check_langs(src_lang, tgt_lang)
    for name, column in (("src_column", src_column), ("tgt_column", tgt_column)):
        if isinstance(column, bool) or not isinstance(column, int) or column < 0:
            raise ValueError(f"{name} must be a non-negative int (a 0-based field index), got {column!r}")
    if src_column == tgt_column:
        raise ValueError(f"src_column and tgt_column must differ, both are {src_column}")
    path = _require_file(path, "TSV file")
    return _build(iter_tsv(path, src_column, tgt_column), src_lang=src_lang, tgt_lang=tgt_lang, name=f"{str(path)!r}")


def iter_tsv(path: Path, src_column: int = 0, tgt_column: int = 1) -> Iterator[tuple[str, str]]:
    """The pairs of a TSV file, read as a stream (see :func:`read_tsv`, which checks the arguments)."""
    needed = max(src_column, tgt_column) + 1
    # A plain split, not the csv module: csv would end a row at a lone "\r" inside a sentence.
    for number, line in enumerate(iter_lines(path), start=1):
        fields = line.split("\t") if line else []
        if len(fields) < needed:
            raise ValueError(
                f"{str(path)!r} line {number}: {len(fields)} tab-separated field(s), but "
                f"src_column={src_column} and tgt_column={tgt_column} need at least {needed}"
            )
        if len(fields) > 2 and (src_column, tgt_column) == (0, 1):
            # A third field is not a sentence pair's: a tab inside a sentence, or a corpus with other columns
            # (ids, scores), whose fields would otherwise be dropped unseen.
            raise ValueError(
                f"{str(path)!r} line {number}: {len(fields)} tab-separated fields where a pair has 2 (source, "
                "target); remove the others, or name the columns with read_tsv(src_column=..., tgt_column=...)"
            )
        yield fields[src_column], fields[tgt_column]


def read_jsonl(path: str | os.PathLike, *, src_lang: str, tgt_lang: str) -> Dataset:
    """Reads JSON Lines, one object per line: ``{"translation": {"en": ..., "de": ...}}`` (the WMT layout) or the
    flat ``{"en": ..., "de": ...}``. Blank lines are skipped.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if a line is not a JSON object, lacks one of the languages or has a non-string sentence (the
            message gives the line number), or if the file holds no pairs.
    """
    _check_langs(src_lang, tgt_lang)
    path = _require_file(path, "JSON Lines file")
    return _build(iter_jsonl(path, src_lang, tgt_lang), src_lang=src_lang, tgt_lang=tgt_lang, name=f"{str(path)!r}")


def iter_jsonl(path: Path, src_lang: str, tgt_lang: str) -> Iterator[tuple[str, str]]:
    """The pairs of a JSON Lines file, read as a stream (see :func:`read_jsonl`)."""
    for number, line in enumerate(iter_lines(path), start=1):
        if not line.strip():
            continue
        where = f"{str(path)!r} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{where}: invalid JSON ({err.msg}); the file must hold one JSON object per line"
            ) from err
        if isinstance(record, dict) and isinstance(record.get("translation"), dict):
            record = record["translation"]
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        for lang in (src_lang, tgt_lang):
            if lang not in record:
                raise ValueError(
                    f"{where}: no {lang!r} key (found {sorted(record)}); expected "
                    f'{{"translation": {{"{src_lang}": ..., "{tgt_lang}": ...}}}} or '
                    f'{{"{src_lang}": ..., "{tgt_lang}": ...}}'
                )
            if not isinstance(record[lang], str):
                raise ValueError(f"{where}: {lang!r} must be a string, got {type(record[lang]).__name__}")
        yield record[src_lang], record[tgt_lang]


def _languages_of(ds: Dataset) -> list[str]:
    """The languages of a WMT-style ``translation`` column, or raises ValueError naming what was found instead."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a datasets.Dataset, got {type(ds).__name__}")
    if "translation" not in ds.column_names:
        raise ValueError(
            f"the dataset has no 'translation' column (columns: {ds.column_names}); expected the WMT layout, "
            "rows like {'translation': {'en': ..., 'de': ...}}"
        )
    feature = ds.features["translation"]
    if isinstance(feature, Translation):
        return list(feature.languages)
    if isinstance(feature, dict):
        return list(feature)
    raise ValueError(
        f"the 'translation' column has type {feature}; expected a Translation feature or a dict of strings, "
        "one per language"
    )


def _check_dataset_langs(ds: Dataset, src_lang: str, tgt_lang: str) -> list[str]:
    found = _languages_of(ds)
    missing = [lang for lang in (src_lang, tgt_lang) if lang not in found]
    if missing:
        raise ValueError(
            f"the 'translation' column has languages {found}, not {missing}; pick src_lang/tgt_lang among these"
        )
    return found


def from_translation_dataset(ds: Dataset, *, src_lang: str, tgt_lang: str) -> Dataset:
    """Takes any Dataset with a WMT-style ``translation`` column and keeps only that column, restricted to the
    two languages.

    Raises:
        ValueError: if the column is missing, lacks one of the languages (the message names those found), or the
            dataset has no rows.
    """
    _check_langs(src_lang, tgt_lang)
    # Checked first: an empty dataset often has no usable column types to report on.
    if isinstance(ds, Dataset) and len(ds) == 0:
        raise ValueError(f"corpus {ds.info.dataset_name or 'given as a Dataset'} is empty: it has 0 rows")
    found = _check_dataset_langs(ds, src_lang, tgt_lang)
    ds = ds.select_columns(["translation"])
    features = _translation_features(src_lang, tgt_lang)
    if sorted(found) == sorted([src_lang, tgt_lang]):
        return ds.cast(features) if ds.features != features else ds
    # A multi-way corpus: drop the other languages.
    return ds.map(
        lambda batch: {"translation": [{src_lang: t[src_lang], tgt_lang: t[tgt_lang]} for t in batch["translation"]]},
        batched=True,
        features=features,
        desc=f"Selecting {src_lang}-{tgt_lang}",
    )


def encode_pairs(tokenizer, sources: list[str], targets: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of sources and targets, each ending with </s>: `input_ids` and `labels`.

    A plain `tokenizers` tokenizer (the one `train_shared_bpe` makes, as `from_pretrained` loads it) encodes through
    its Rust backend in parallel batches, about 1.7x the rate of the `tokenizer(...)` call, whose Python side builds
    masks and encodings that are thrown away here; every other tokenizer goes through its call, with `text_target` for
    the targets, so that one with a separate target vocabulary (Marian's) encodes the labels with it.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if (
        type(tokenizer) is PreTrainedTokenizerFast
        and backend is not None
        and backend.truncation is None
        and backend.padding is None
    ):
        return [e.ids for e in backend.encode_batch(sources)], [e.ids for e in backend.encode_batch(targets)]
    return (
        tokenizer(sources, return_attention_mask=False, verbose=False)["input_ids"],
        tokenizer(text_target=targets, return_attention_mask=False, verbose=False)["input_ids"],
    )


def tokenize_pairs(
    ds: Dataset,
    tokenizer,
    *,
    src_lang: str,
    tgt_lang: str,
    max_length: int | None = None,
    num_proc: int | None = None,
) -> tuple[Dataset, int]:
    """``input_ids`` and ``labels`` (each ending with </s>) for a Dataset with a WMT-style ``translation`` column;
    every other column is dropped. Returns the tokenized dataset and the number of pairs dropped.

    Pairs with more than ``max_length`` tokens on either side are dropped, never truncated: a truncated target
    teaches the model to stop mid-sentence, and a truncated source to translate what it was not given. None keeps
    every pair. Training and fine-tuning both tokenize through here; test sets are not dropped from but translated
    whole (``vaswani_hf.evaluation.translate`` truncates an over-long source with a warning).

    Raises:
        ValueError: if there is no ``translation`` column, it lacks ``src_lang`` or ``tgt_lang``, or a row's text of
            either is missing.
    """
    _check_dataset_langs(ds, src_lang, tgt_lang)

    def encode(batch: dict, indices: list[int]) -> dict:
        for index, pair in zip(indices, batch["translation"], strict=True):
            for lang in (src_lang, tgt_lang):
                if not isinstance((pair or {}).get(lang), str):
                    raise ValueError(
                        f"row {index} has no {lang!r} text; read the corpus with load_parallel, which checks every "
                        "row, or drop the row"
                    )
        input_ids, labels = encode_pairs(
            tokenizer,
            [pair[src_lang] for pair in batch["translation"]],
            [pair[tgt_lang] for pair in batch["translation"]],
        )
        return {"input_ids": input_ids, "labels": labels}

    encoded = ds.map(
        encode, batched=True, with_indices=True, num_proc=num_proc, remove_columns=ds.column_names, desc="Tokenizing"
    )
    if max_length is None:
        return encoded, 0
    kept = encoded.filter(
        lambda batch: [
            max(len(s), len(t)) <= max_length for s, t in zip(batch["input_ids"], batch["labels"], strict=True)
        ],
        batched=True,
        num_proc=num_proc,
        desc=f"Dropping pairs over {max_length} tokens",
    )
    return kept, len(encoded) - len(kept)


def load_parallel(
    path_or_dataset: str | os.PathLike | Dataset | DatasetDict,
    *,
    src_lang: str,
    tgt_lang: str,
    tgt_path: str | os.PathLike | None = None,
    split: str = "train",
) -> Dataset:
    """Loads a parallel corpus from whatever form it comes in, as a Dataset with one ``translation`` column:

    - a ``Dataset`` with a WMT-style ``translation`` column, or a ``DatasetDict`` (its ``split`` is used);
    - ``"hub:NAME"`` or ``"hub:NAME:CONFIG"``: ``datasets.load_dataset(NAME, CONFIG, split=split)``, e.g.
      ``"hub:wmt14:de-en"``;
    - a path with ``tgt_path``: two line-aligned text files, ``path_or_dataset`` in ``src_lang``;
    - ``*.tsv``: tab-separated pairs (see :func:`read_tsv`); ``*.jsonl`` or ``*.json``: JSON Lines
      (see :func:`read_jsonl`);
    - a folder written by ``save_to_disk`` (a Dataset, or a DatasetDict whose ``split`` is used);
    - a prefix such as ``data/train`` for the files ``data/train.en`` and ``data/train.de``.

    Raises:
        FileNotFoundError: if no file matches the path (the message lists what was looked for).
        ValueError: if the corpus is malformed or empty, or ``split`` is not in a DatasetDict.
        TypeError: if ``path_or_dataset`` is neither a path nor a Dataset/DatasetDict.
    """
    source = parallel_source(path_or_dataset, src_lang=src_lang, tgt_lang=tgt_lang, tgt_path=tgt_path, split=split)
    if source.dataset is not None:
        return source.dataset
    return _build(source.pairs(), src_lang=src_lang, tgt_lang=tgt_lang, name=source.name)


@dataclass(frozen=True)
class ParallelSource:
    """A parallel corpus found but not read: its name, a stream of its pairs, and what identifies its content.

    Text corpora (aligned files, TSV, JSON Lines) are read as a stream by `pairs()`, so that a corpus of millions of
    pairs can be cleaned and tokenized without ever being held in memory (`vaswani_hf.data.prepared`); a corpus that
    is a `Dataset` already (a saved folder, the Hub, one passed in) streams its Arrow record batches.
    """

    name: str
    # A new stream of (source, target) pairs at each call.
    pairs: Callable[[], Iterator[tuple[str, str]]]
    # The files whose bytes are the corpus: text files, or the Arrow files under a Dataset.
    files: tuple[Path, ...] = ()
    # The corpus as a Dataset of the WMT layout, when it is one.
    dataset: Dataset | None = None

    def fingerprint(self) -> str | None:
        """A hash of the files the corpus is read from (their bytes, in order), or None for a Dataset held in memory,
        which only reading it whole could identify."""
        if not self.files:
            return None
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"\x00{path.name}\x00".encode())
            with open(path, "rb") as file:
                while block := file.read(1 << 24):
                    digest.update(block)
        return digest.hexdigest()


def parallel_source(
    path_or_dataset: str | os.PathLike | Dataset | DatasetDict,
    *,
    src_lang: str,
    tgt_lang: str,
    tgt_path: str | os.PathLike | None = None,
    split: str = "train",
) -> ParallelSource:
    """Finds the corpus that :func:`load_parallel` would load, without reading its text files (see there for the
    forms it takes and the errors)."""
    _check_langs(src_lang, tgt_lang)
    source = path_or_dataset
    if isinstance(source, DatasetDict):
        source = _pick_split(source, split)
    if isinstance(source, Dataset):
        return _dataset_source(source, "the Dataset given", src_lang, tgt_lang)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            f"path_or_dataset must be a path, 'hub:NAME[:CONFIG]', a Dataset or a DatasetDict, got {source!r}"
        )

    if isinstance(source, str) and source.startswith("hub:"):
        name, _, config = source[len("hub:") :].partition(":")
        if not name:
            raise ValueError(
                f"{source!r} names no dataset; write 'hub:NAME' or 'hub:NAME:CONFIG', e.g. 'hub:wmt14:de-en'"
            )
        ds = datasets.load_dataset(name, config or None, split=split)
        return _dataset_source(ds, source, src_lang, tgt_lang)

    path = Path(source)
    if tgt_path is not None:
        return _aligned_source(path, Path(tgt_path), src_lang, tgt_lang)
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        path = _require_file(path, "TSV file")
        return ParallelSource(repr(str(path)), functools.partial(iter_tsv, path), files=(path,))
    if suffix in (".jsonl", ".json"):
        path = _require_file(path, "JSON Lines file")
        return ParallelSource(repr(str(path)), functools.partial(iter_jsonl, path, src_lang, tgt_lang), files=(path,))
    if path.is_dir():
        if not any((path / marker).is_file() for marker in ("state.json", "dataset_dict.json")):
            raise FileNotFoundError(
                f"{str(path)!r} is a folder but not one written by Dataset.save_to_disk or DatasetDict.save_to_disk "
                "(no state.json or dataset_dict.json in it)"
            )
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, DatasetDict):
            loaded = _pick_split(loaded, split)
        return _dataset_source(loaded, repr(str(path)), src_lang, tgt_lang)

    src_file, tgt_file = Path(f"{path}.{src_lang}"), Path(f"{path}.{tgt_lang}")
    if src_file.is_file() and tgt_file.is_file():
        return _aligned_source(src_file, tgt_file, src_lang, tgt_lang)
    if src_file.is_file() or tgt_file.is_file():
        missing = tgt_file if src_file.is_file() else src_file
        raise FileNotFoundError(
            f"found one side of the aligned pair under the prefix {str(path)!r} but not {str(missing)!r}"
        )
    raise FileNotFoundError(
        f"no corpus at {str(path)!r}: looked for a .tsv/.jsonl/.json file, a folder written by save_to_disk, and "
        f"the aligned text files {str(src_file)!r} and {str(tgt_file)!r}. Pass tgt_path= for two text files with "
        "other names, or 'hub:NAME[:CONFIG]' for a Hugging Face Hub dataset"
    )


def _aligned_source(src_path: Path, tgt_path: Path, src_lang: str, tgt_lang: str) -> ParallelSource:
    src_path = _require_file(src_path, f"{src_lang} text file")
    tgt_path = _require_file(tgt_path, f"{tgt_lang} text file")
    pairs = functools.partial(iter_aligned_text, src_path, tgt_path)
    return ParallelSource(repr(str(src_path)), pairs, files=(src_path, tgt_path))


def _dataset_source(ds: Dataset, name: str, src_lang: str, tgt_lang: str) -> ParallelSource:
    ds = from_translation_dataset(ds, src_lang=src_lang, tgt_lang=tgt_lang)

    def pairs() -> Iterator[tuple[str, str]]:
        for batch in ds.with_format("arrow").iter(batch_size=_CHUNK_ROWS):
            column = batch.column("translation").combine_chunks()
            yield from zip(column.field(src_lang).to_pylist(), column.field(tgt_lang).to_pylist(), strict=True)

    files = tuple(Path(entry["filename"]) for entry in ds.cache_files)
    return ParallelSource(name, pairs, files=files, dataset=ds)


def _pick_split(dd: DatasetDict, split: str) -> Dataset:
    if split not in dd:
        raise ValueError(f"split {split!r} is not in the DatasetDict (splits: {list(dd)}); pass split=")
    return dd[split]


@dataclass
class CleaningReport:
    """How many pairs :func:`clean_parallel` kept and dropped, per filter; the drop counts and ``kept`` add up to
    ``total`` because each dropped pair is counted under the first filter that removes it."""

    total: int
    kept: int
    empty: int
    too_long: int
    ratio: int
    duplicates: int

    def __str__(self) -> str:
        share = 100 * self.kept / self.total if self.total else 0.0
        return (
            f"kept {self.kept} of {self.total} pairs ({share:.1f}%); dropped {self.empty} empty, "
            f"{self.too_long} too long, {self.ratio} over the length ratio, {self.duplicates} duplicates"
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def check_not_empty(self) -> None:
        """Raises ValueError, naming the filter that removed the last pairs, when no pair was kept."""
        if self.kept:
            return
        stages = [
            ("empty", "a side shorter than min_chars"),
            ("too_long", "a side longer than max_words"),
            ("ratio", "a word-length ratio above max_ratio"),
            ("duplicates", "an exact duplicate"),
        ]
        name, why = [(name, why) for name, why in stages if getattr(self, name)][-1]
        raise ValueError(
            f"cleaning removed every pair ({self}): the {name} filter ({why}) removed the last ones; check the "
            "languages, the data and the thresholds"
        )


def normalise_whitespace(text: str | None) -> str:
    """Every run of whitespace (newlines, tabs, non-breaking spaces) as one space, none at either end; None as ""."""
    # str.split() splits at exactly the characters the regex \s matches (str.isspace), in a tenth of its time.
    return " ".join(text.split()) if text else ""


def pair_verdict(src: str, tgt: str, *, min_chars: int, max_words: int | None, max_ratio: float | None) -> int:
    """Which filter of :func:`clean_parallel` drops a pair whose whitespace is normalised (`_EMPTY`, `_TOO_LONG`,
    `_RATIO`), or `_KEEP`; duplicates are judged apart, by `pair_key`."""
    if len(src) < min_chars or len(tgt) < min_chars:
        return _EMPTY
    n_src, n_tgt = len(src.split()), len(tgt.split())
    longer, shorter = max(n_src, n_tgt), min(n_src, n_tgt)
    if max_words is not None and longer > max_words:
        return _TOO_LONG
    if max_ratio is not None and shorter >= 1 and longer > 3 and longer > max_ratio * shorter:
        return _RATIO
    return _KEEP


def pair_key(src: str, tgt: str) -> bytes:
    """A 128-bit digest that stands in for a pair when duplicates are sought: far smaller than the two strings."""
    return hashlib.blake2b(f"{src}\0{tgt}".encode(), digest_size=16).digest()


def check_cleaning_settings(min_chars: int, max_words: int | None, max_ratio: float | None) -> None:
    """Raises ValueError naming a cleaning threshold that is out of range."""
    if isinstance(min_chars, bool) or not isinstance(min_chars, int) or min_chars < 0:
        raise ValueError(f"min_chars must be a non-negative int, got {min_chars!r}")
    if max_words is not None and (isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1):
        raise ValueError(f"max_words must be a positive int or None, got {max_words!r}")
    if max_ratio is not None and not max_ratio >= 1:
        raise ValueError(f"max_ratio must be a number >= 1 or None, got {max_ratio!r}")


def clean_parallel(
    ds: Dataset,
    *,
    src_lang: str,
    tgt_lang: str,
    min_chars: int = 1,
    max_words: int | None = 250,
    max_ratio: float | None = 3.0,
    dedup: bool = True,
    num_proc: int | None = None,
) -> tuple[Dataset, CleaningReport]:
    """Normalises whitespace in both sides (strip, runs of whitespace to one space) and drops, in this order:

    1. ``empty``: pairs with a side shorter than ``min_chars`` characters (the default 1 drops blank sides);
    2. ``too_long``: pairs with a side of more than ``max_words`` whitespace-separated words (None: no limit);
    3. ``ratio``: pairs whose longer side has more than ``max_ratio`` times the words of the shorter one (None: no
       limit); only when the longer side has more than 3 words, so that short pairs like "OK" / "Okay gut ." stay;
    4. ``duplicates``: repeats of an earlier identical (source, target) pair, if ``dedup``.

    Other columns (e.g. ``origin``) are kept. ``num_proc`` parallelises the per-pair checks.

    Returns:
        The cleaned Dataset and a :class:`CleaningReport` of what each filter removed.

    Raises:
        ValueError: on invalid thresholds, if ``ds`` lacks the languages, or if no pair survives (the message
            names the filter that removed the last ones).
    """
    _check_langs(src_lang, tgt_lang)
    check_cleaning_settings(min_chars, max_words, max_ratio)
    _check_dataset_langs(ds, src_lang, tgt_lang)
    if len(ds) == 0:
        raise ValueError("clean_parallel got an empty dataset: 0 pairs to clean")

    def check(batch: dict) -> dict:
        translations, reasons, keys = [], [], []
        for pair in batch["translation"]:
            src, tgt = normalise_whitespace(pair[src_lang]), normalise_whitespace(pair[tgt_lang])
            translations.append({**pair, src_lang: src, tgt_lang: tgt})
            reasons.append(pair_verdict(src, tgt, min_chars=min_chars, max_words=max_words, max_ratio=max_ratio))
            keys.append(pair_key(src, tgt))
        return {"translation": translations, "_clean_reason": reasons, "_clean_key": keys}

    features = ds.features.copy()
    features["_clean_reason"] = datasets.Value("int8")
    features["_clean_key"] = datasets.Value("binary")
    checked = ds.map(check, batched=True, features=features, num_proc=num_proc, desc="Checking pairs")

    counts = {_EMPTY: 0, _TOO_LONG: 0, _RATIO: 0}
    duplicates, keep, seen = 0, [], set()
    # Duplicates need one ordered pass with a shared set, so this part runs in the main process.
    # Read as one Arrow table: iterating a Column formats it row by row, ten times slower.
    table = checked.select_columns(["_clean_reason", "_clean_key"]).with_format("arrow")[:]
    reasons, keys = table.column("_clean_reason").to_pylist(), table.column("_clean_key").to_pylist()
    for index, (reason, key) in enumerate(zip(reasons, keys, strict=True)):
        if reason != _KEEP:
            counts[reason] += 1
        elif dedup and key in seen:
            duplicates += 1
        else:
            seen.add(key)
            keep.append(index)

    report = CleaningReport(
        total=len(ds),
        kept=len(keep),
        empty=counts[_EMPTY],
        too_long=counts[_TOO_LONG],
        ratio=counts[_RATIO],
        duplicates=duplicates,
    )
    report.check_not_empty()
    cleaned = checked.select(keep).remove_columns(["_clean_reason", "_clean_key"])
    return cleaned, report
