"""A training corpus cleaned and tokenized once, kept as memory-mapped Arrow files and reused by every later start.

A corpus the size of the paper's (WMT14 English-German, 4.5M pairs) takes minutes to clean and tokenize, and a
Python list of its pairs takes gigabytes. Here every stage streams in chunks of `CHUNK_PAIRS` pairs and writes Arrow
files under the cache (`$VASWANI_HF_CACHE/prepared`, see `default_cache_dir`), each in a folder named by a hash of
everything its content depends on:

- `text-<key>/`: the cleaned pairs (`vaswani_hf.data.parallel.clean_parallel`'s filters, duplicates removed), keyed
  by the corpus's content (`ParallelSource.fingerprint`), its languages and the cleaning settings; beside them the
  BPE tokenizers trained on them, one folder per vocabulary size;
- `tokens-<key>/`: `input_ids` and `labels`, keyed by the cleaned text, the tokenizer (its serialised form) and
  `max_length`.

A second start, a `--resume` or a second process of a multi-process run opens these files memory-mapped: no
preparation time, and no memory beyond the pages it reads. Folders are written whole and renamed into place, so an
interrupted preparation leaves nothing that a later start could take for complete. Delete a folder to rebuild it, or
the whole `prepared` folder to free the disk (a corpus takes about twice its text size).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, Translation

from ..files import AtomicDir, write_atomic
from .parallel import (
    _KEEP,
    CleaningReport,
    ParallelSource,
    check_cleaning_settings,
    encode_pairs,
    normalise_whitespace,
    pair_key,
    pair_verdict,
)

# Bumped whenever a change to the cleaning or the encoding changes what a prepared folder holds, so that folders of
# an older version are never reused for it.
VERSION = 1
# Pairs per step of cleaning: about 16 MB of text, so that the stage holds a few hundred MB at most.
CHUNK_PAIRS = 100_000
# Pairs per step of tokenization, smaller: the Rust tokenizer's encodings of a pair take about 3 KB until their ids
# are read, and two steps are in flight at a time (`_ahead`).
TOKENIZE_PAIRS = 20_000
RECORD = "record.json"
TEXT_FILE = "pairs.arrow"
TOKENS_FILE = "tokens.arrow"
TOKEN_COLUMNS = ("input_ids", "labels")


def cache_key(**parts) -> str:
    """A short hash of `parts` (JSON-serialisable), the name of a prepared folder."""
    text = json.dumps({"version": VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _read_record(folder: Path) -> dict | None:
    path = folder / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _publish(build: Callable[[Path], dict], folder: Path) -> dict:
    """Runs `build(staging)` in a temporary folder and renames it to `folder`; returns its record. A folder that
    another process completed first is taken as it is."""
    started = time.perf_counter()
    try:
        with AtomicDir(folder) as staging:
            record = build(staging)
            record["seconds"] = round(time.perf_counter() - started, 1)
            write_atomic(staging / RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    except FileExistsError:
        if _read_record(folder) is None:
            raise
    return _read_record(folder)


def _write_stream(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> int:
    """Writes record batches as an Arrow stream file (the format `Dataset.from_file` maps); returns the rows."""
    rows = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _chunks(pairs: Iterator[tuple[str, str]], size: int = CHUNK_PAIRS) -> Iterator[list[tuple[str, str]]]:
    chunk = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _translation_batch(schema: pa.Schema, sources: list[str], targets: list[str], src_lang: str) -> pa.RecordBatch:
    struct = schema.field("translation").type
    columns = {src_lang: sources}
    columns.update({field.name: targets for field in struct if field.name != src_lang})
    arrays = [pa.array(columns[field.name], pa.string()) for field in struct]
    return pa.record_batch([pa.StructArray.from_arrays(arrays, fields=list(struct))], schema=schema)


class PreparedText:
    """The cleaned pairs of one corpus in one folder: `dataset` (memory-mapped, the WMT layout), `record` (what was
    read and kept), `key` (the folder's key, which the tokens folder and a tokenizer trained on it build on)."""

    def __init__(self, folder: Path, record: dict):
        self.folder, self.record, self.key = folder, record, record["key"]
        self.dataset = Dataset.from_file(str(folder / TEXT_FILE))
        self.report = CleaningReport(**record["cleaning"]) if record["cleaning"] else None

    def texts(self, languages: tuple[str, ...]) -> Iterator[str]:
        """Every sentence of `languages`, pair by pair, streamed from the file (for training a tokenizer)."""
        for batch in self.dataset.data.to_batches(max_chunksize=10_000):
            column = batch.column(0)
            sides = [column.field(lang).to_pylist() for lang in languages]
            for pair in zip(*sides, strict=True):
                yield from pair

    def pairs(self, src_lang: str, tgt_lang: str, chunk: int) -> Iterator[tuple[list[str], list[str]]]:
        """The pairs in chunks of at most `chunk`, as (sources, targets)."""
        for batch in self.dataset.data.to_batches(max_chunksize=chunk):
            column = batch.column(0)
            yield column.field(src_lang).to_pylist(), column.field(tgt_lang).to_pylist()


def prepare_text(
    source: ParallelSource,
    cache_dir: Path,
    *,
    src_lang: str,
    tgt_lang: str,
    clean: bool,
    max_words: int | None,
    max_ratio: float | None,
    log: Callable[[str], None] | None = None,
) -> PreparedText:
    """The pairs of `source` (with `clean`, whitespace normalised, `clean_parallel`'s filters applied and duplicates
    removed), from the cache when they were prepared before, else streamed into it.

    Raises:
        ValueError: if the corpus is a Dataset held in memory (nothing identifies it for the cache), holds no pairs,
            or cleaning removes them all.
    """
    check_cleaning_settings(1, max_words, max_ratio)
    settings = {"clean": clean, "max_words": max_words, "max_ratio": max_ratio}
    fingerprint = source.fingerprint()
    key = cache_key(corpus=fingerprint, languages=[src_lang, tgt_lang], **settings)
    folder = cache_dir / f"text-{key}"
    if fingerprint is None:
        raise ValueError(
            f"corpus {source.name} is a Dataset held in memory, which cannot be prepared and cached for training: "
            "save it with save_to_disk and give that folder"
        )
    record = _read_record(folder)
    if record is not None:
        if log:
            log(f"corpus: the cleaned pairs of {source.name} from {folder} ({record['pairs']} pairs)")
        return PreparedText(folder, record)
    if log:
        log(f"corpus: cleaning {source.name} into {folder}")
    features = Features({"translation": Translation(languages=[src_lang, tgt_lang])})
    schema = features.arrow_schema

    def build(staging: Path) -> dict:
        # Pass 1: every pair through the filters, the survivors written as they come with a digest each. Pass 2
        # keeps each survivor's first occurrence: finding them on an array of 16-byte digests takes tens of MB for
        # millions of pairs, where a set of Python bytes would take hundreds.
        counts, digests, total = {reason: 0 for reason in range(4)}, [], 0

        def survivors() -> Iterator[pa.RecordBatch]:
            nonlocal total
            for chunk in _chunks(source.pairs()):
                sources, targets, keys = [], [], []
                for src, tgt in chunk:
                    verdict = _KEEP
                    if clean:
                        src, tgt = normalise_whitespace(src), normalise_whitespace(tgt)
                        verdict = pair_verdict(src, tgt, min_chars=1, max_words=max_words, max_ratio=max_ratio)
                    counts[verdict] += 1
                    if verdict == _KEEP:
                        sources.append(src)
                        targets.append(tgt)
                        if clean:
                            keys.append(pair_key(src, tgt))
                # One bytes object per chunk: millions of small ones would take ten times the memory of their digests.
                digests.append(b"".join(keys))
                total += len(chunk)
                if sources:
                    yield _translation_batch(schema, sources, targets, src_lang)

        passed = staging / "passed.arrow"
        _write_stream(passed, schema, survivors())
        if total == 0:
            raise ValueError(f"corpus {source.name} is empty: it holds no sentence pairs")
        duplicates = 0
        keys = np.frombuffer(b"".join(digests), dtype="V16")
        del digests[:]
        if len(keys):
            first = np.zeros(len(keys), dtype=bool)
            first[np.unique(keys, return_index=True)[1]] = True
            duplicates = int(len(keys) - first.sum())
            mask = pa.array(first)
            table = Dataset.from_file(str(passed)).data

            def deduplicated() -> Iterator[pa.RecordBatch]:
                start = 0
                for batch in table.to_batches():
                    yield batch.filter(mask.slice(start, batch.num_rows))
                    start += batch.num_rows

            pairs = _write_stream(staging / TEXT_FILE, schema, deduplicated())
            del table
            passed.unlink()
        else:
            pairs = counts[_KEEP]
            passed.rename(staging / TEXT_FILE)
        report = None
        if clean:
            report = CleaningReport(
                total=total, kept=pairs, empty=counts[1], too_long=counts[2], ratio=counts[3], duplicates=duplicates
            )
            report.check_not_empty()
        elif pairs == 0:
            raise ValueError(f"corpus {source.name} holds no pairs")
        return {
            "key": key,
            "corpus": source.name,
            "fingerprint": fingerprint,
            "languages": [src_lang, tgt_lang],
            "settings": settings,
            "pairs": pairs,
            "cleaning": report.as_dict() if report else None,
        }

    record = _publish(build, folder)
    prepared = PreparedText(folder, record)
    if log:
        log(f"corpus: {prepared.report or str(record['pairs']) + ' pairs'} ({record['seconds']} s)")
    return prepared


def tokenizer_identity(tokenizer) -> str:
    """A hash of what decides a tokenizer's ids: its class and its serialised form (the `tokenizers` JSON, or the
    vocabulary files of another tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        content = backend.to_str()
    else:
        content = json.dumps({"vocab": tokenizer.get_vocab(), "special": tokenizer.all_special_tokens}, sort_keys=True)
    return hashlib.sha256(f"{type(tokenizer).__name__}\x00{content}".encode()).hexdigest()


def prepare_tokens(
    text: PreparedText,
    tokenizer,
    cache_dir: Path,
    *,
    src_lang: str,
    tgt_lang: str,
    max_length: int | None,
    log: Callable[[str], None] | None = None,
) -> tuple[Dataset, int]:
    """`input_ids` and `labels` of the pairs in `text` (memory-mapped, int32), pairs with more than `max_length`
    tokens on a side dropped as `tokenize_pairs` drops them; from the cache when prepared before. Returns the dataset
    and the number of pairs dropped."""
    key = cache_key(text=text.key, tokenizer=tokenizer_identity(tokenizer), max_length=max_length)
    folder = cache_dir / f"tokens-{key}"
    record = _read_record(folder)
    if record is None:
        if log:
            log(f"corpus: tokenizing {text.record['pairs']} pairs into {folder}")
        schema = pa.schema([(name, pa.list_(pa.int32())) for name in TOKEN_COLUMNS])
        dropped = 0

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal dropped
            for encoded in _ahead(
                lambda chunk: encode_pairs(tokenizer, *chunk), text.pairs(src_lang, tgt_lang, TOKENIZE_PAIRS)
            ):
                columns = [pa.array(ids, pa.list_(pa.int32())) for ids in encoded]
                batch = pa.record_batch(columns, schema=schema)
                if max_length is not None:
                    longest = pc.max_element_wise(*(pc.list_value_length(column) for column in columns))
                    keep = pc.less_equal(longest, max_length)
                    dropped += batch.num_rows - pc.sum(keep).as_py()
                    batch = batch.filter(keep)
                yield batch

        def build(staging: Path) -> dict:
            pairs = _write_stream(staging / TOKENS_FILE, schema, batches())
            return {"key": key, "text": text.key, "max_length": max_length, "pairs": pairs, "dropped": dropped}

        record = _publish(build, folder)
        if log:
            log(f"corpus: tokenized in {record['seconds']} s")
    return Dataset.from_file(str(folder / TOKENS_FILE)), record["dropped"]


def _ahead(function: Callable, items: Iterator) -> Iterator:
    """`function(item)` for each item, the next one computed in a thread while the caller works on the current one.

    The Rust tokenizer encodes without Python's lock, on every core; the Arrow conversion of its output holds the
    lock on one. Overlapping the two keeps the cores busier: 8% faster than one after the other on 2 cores.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for item in items:
            submitted = pool.submit(function, item)
            if pending is not None:
                yield pending.result()
            pending = submitted
        if pending is not None:
            yield pending.result()


def sequence_lengths(dataset: Dataset, column: str) -> np.ndarray:
    """The length of every sequence of a list column, read from Arrow without building Python lists."""
    return pc.list_value_length(dataset.with_format("arrow")[column]).to_numpy(zero_copy_only=False)
