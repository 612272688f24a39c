"""Tests for loading and cleaning parallel corpora (vaswani_hf.data.parallel)."""

import json

import datasets
import pytest
from datasets import Dataset, DatasetDict

from vaswani_hf.data.parallel import (
    CleaningReport,
    clean_parallel,
    from_translation_dataset,
    load_parallel,
    read_aligned_text,
    read_jsonl,
    read_tsv,
    tokenize_pairs,
)
from vaswani_hf.tokenization import train_shared_bpe

LANGS = dict(src_lang="en", tgt_lang="de")
PAIRS = [("The house is small.", "Das Haus ist klein."), ('He said "yes".', 'Er sagte „ja".')]


def rows(ds: Dataset) -> list[tuple[str, str]]:
    return [(t["en"], t["de"]) for t in ds["translation"]]


def write_aligned(folder, name="train", pairs=PAIRS):
    (folder / f"{name}.en").write_text("".join(f"{en}\n" for en, _ in pairs), encoding="utf-8")
    (folder / f"{name}.de").write_text("".join(f"{de}\n" for _, de in pairs), encoding="utf-8")


def test_read_aligned_text(tmp_path):
    write_aligned(tmp_path)
    ds = read_aligned_text(tmp_path / "train.en", tmp_path / "train.de", **LANGS)
    assert ds.column_names == ["translation"]
    assert rows(ds) == PAIRS


def test_read_aligned_text_crlf_and_unicode_separators(tmp_path):
    # \r\n endings are stripped; U+2028 inside a sentence is not a line break.
    (tmp_path / "a.en").write_bytes("one\u2028line\r\ntwo\r\n".encode())
    (tmp_path / "a.de").write_bytes(b"eins\r\nzwei")
    ds = read_aligned_text(tmp_path / "a.en", tmp_path / "a.de", **LANGS)
    assert rows(ds) == [("one\u2028line", "eins"), ("two", "zwei")]


def test_read_aligned_text_misaligned(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(ValueError, match=r"a\.en'? has 3 lines.*a\.de'? has 2"):
        read_aligned_text(tmp_path / "a.en", tmp_path / "a.de", **LANGS)


def test_read_aligned_text_missing_file(tmp_path):
    (tmp_path / "a.en").write_text("one\n")
    with pytest.raises(FileNotFoundError, match=r"a\.de"):
        read_aligned_text(tmp_path / "a.en", tmp_path / "a.de", **LANGS)


def test_empty_corpus(tmp_path):
    (tmp_path / "a.en").write_text("")
    (tmp_path / "a.de").write_text("")
    with pytest.raises(ValueError, match="corpus .* is empty"):
        read_aligned_text(tmp_path / "a.en", tmp_path / "a.de", **LANGS)
    (tmp_path / "a.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="corpus .* is empty"):
        read_jsonl(tmp_path / "a.jsonl", **LANGS)
    with pytest.raises(ValueError, match="corpus .* is empty"):
        from_translation_dataset(Dataset.from_dict({"translation": []}), **LANGS)


def test_read_tsv_keeps_quotes(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text('The "big" house\tDas "große" Haus\n"Unbalanced quote\t„Unausgeglichen\n', encoding="utf-8")
    ds = read_tsv(path, **LANGS)
    assert rows(ds) == [('The "big" house', 'Das "große" Haus'), ('"Unbalanced quote', "„Unausgeglichen")]


def test_read_tsv_columns(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("1\tHaus\tx\thouse\n2\tKatze\tx\tcat\n")
    ds = read_tsv(path, src_lang="en", tgt_lang="de", src_column=3, tgt_column=1)
    assert rows(ds) == [("house", "Haus"), ("cat", "Katze")]


def test_read_tsv_too_few_fields(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("house\tHaus\ncat without tab\n")
    with pytest.raises(ValueError, match="line 2: 1 tab-separated field"):
        read_tsv(path, **LANGS)


def test_read_jsonl_both_layouts(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [
        {"translation": {"en": "house", "de": "Haus"}},
        {"en": "cat", "de": "Katze", "id": 7},
        {"translation": {"en": "dog", "de": "Hund", "fr": "chien"}},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n")
    assert rows(read_jsonl(path, **LANGS)) == [("house", "Haus"), ("cat", "Katze"), ("dog", "Hund")]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"en": "cat"', "line 2: invalid JSON"),
        ('{"en": "cat", "fr": "chat"}', "line 2: no 'de' key"),
        ('{"en": "cat", "de": 3}', "line 2: 'de' must be a string"),
        ('["cat", "Katze"]', "line 2: expected a JSON object"),
    ],
)
def test_read_jsonl_bad_line(tmp_path, bad_line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"en": "house", "de": "Haus"}\n' + bad_line + "\n")
    with pytest.raises(ValueError, match=message):
        read_jsonl(path, **LANGS)


def test_from_translation_dataset():
    ds = Dataset.from_dict(
        {"translation": [{"de": "Haus", "en": "house", "fr": "maison"}], "id": [0]},
    )
    out = from_translation_dataset(ds, **LANGS)
    assert out.column_names == ["translation"]
    assert out[0]["translation"] == {"en": "house", "de": "Haus"}
    with pytest.raises(ValueError, match=r"languages \['de', 'en', 'fr'\], not \['es'\]"):
        from_translation_dataset(ds, src_lang="en", tgt_lang="es")
    with pytest.raises(ValueError, match="no 'translation' column"):
        from_translation_dataset(Dataset.from_dict({"en": ["house"], "de": ["Haus"]}), **LANGS)


def test_load_parallel_dispatch(tmp_path):
    write_aligned(tmp_path)
    (tmp_path / "pairs.tsv").write_text("".join(f"{en}\t{de}\n" for en, de in PAIRS))
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"en": en, "de": de}) + "\n" for en, de in PAIRS))
    (tmp_path / "pairs.json").write_text((tmp_path / "pairs.jsonl").read_text())
    (tmp_path / "other.txt").write_text("".join(f"{de}\n" for _, de in PAIRS))
    ds = Dataset.from_dict({"translation": [{"en": en, "de": de} for en, de in PAIRS], "origin": ["x", "y"]})
    ds.save_to_disk(tmp_path / "saved")
    DatasetDict({"train": ds.select([0]), "test": ds.select([1])}).save_to_disk(tmp_path / "saved_dict")

    sources = {
        "prefix": load_parallel(tmp_path / "train", **LANGS),
        "prefix as str": load_parallel(str(tmp_path / "train"), **LANGS),
        "tgt_path": load_parallel(tmp_path / "train.en", tgt_path=tmp_path / "other.txt", **LANGS),
        "tsv": load_parallel(tmp_path / "pairs.tsv", **LANGS),
        "jsonl": load_parallel(tmp_path / "pairs.jsonl", **LANGS),
        "json": load_parallel(tmp_path / "pairs.json", **LANGS),
        "Dataset": load_parallel(ds, **LANGS),
        "save_to_disk": load_parallel(tmp_path / "saved", **LANGS),
    }
    for name, loaded in sources.items():
        assert rows(loaded) == PAIRS, name
        assert loaded.column_names == ["translation"], name
    dd = DatasetDict({"train": ds.select([0]), "test": ds.select([1])})
    assert rows(load_parallel(dd, split="test", **LANGS)) == PAIRS[1:]
    assert rows(load_parallel(tmp_path / "saved_dict", split="test", **LANGS)) == PAIRS[1:]
    with pytest.raises(
        ValueError, match=r"split 'validation' is not in the DatasetDict \(splits: \['train', 'test'\]"
    ):
        load_parallel(dd, split="validation", **LANGS)


def test_load_parallel_hub(monkeypatch):
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return Dataset.from_dict({"translation": [{"de": "Haus", "en": "house"}]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert rows(load_parallel("hub:wmt14:de-en", split="validation", **LANGS)) == [("house", "Haus")]
    load_parallel("hub:someone/corpus", **LANGS)
    assert calls == [("wmt14", "de-en", "validation"), ("someone/corpus", None, "train")]


def test_load_parallel_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_parallel(tmp_path / "nothing", **LANGS)
    for looked_for in ("nothing.en", "nothing.de", "save_to_disk", ".tsv", "hub:"):
        assert looked_for in str(err.value)
    (tmp_path / "half.en").write_text("one\n")
    with pytest.raises(FileNotFoundError, match=r"half\.de"):
        load_parallel(tmp_path / "half", **LANGS)
    with pytest.raises(FileNotFoundError, match=r"missing\.tsv"):
        load_parallel(tmp_path / "missing.tsv", **LANGS)
    with pytest.raises(FileNotFoundError, match="not one written by"):
        load_parallel(tmp_path, **LANGS)


def test_clean_parallel_counts_each_filter():
    pairs = [
        ("  The   house is small. ", "Das Haus\tist  klein."),  # kept, whitespace normalised
        ("OK", "Okay gut ."),  # 1 vs 3 words: short pairs are exempt from the ratio filter
        ("   ", "Leer"),  # empty
        ("Empty German", ""),  # empty
        ("word " * 11, "Wort " * 11),  # too long (max_words=10)
        ("one two three four five six seven", "eins zwei"),  # ratio 3.5 > 3
        ("The house is small.", "Das Haus ist klein."),  # duplicate of the first once normalised
        ("A cat.", "Eine Katze."),  # kept
        ("one two three four five six", "eins zwei"),  # ratio exactly 3: kept
    ]
    ds = Dataset.from_dict(
        {"translation": [{"en": en, "de": de} for en, de in pairs], "origin": [f"o{i}" for i in range(len(pairs))]}
    )
    cleaned, report = clean_parallel(ds, **LANGS, max_words=10)
    assert report == CleaningReport(total=9, kept=4, empty=2, too_long=1, ratio=1, duplicates=1)
    assert report.as_dict() == {"total": 9, "kept": 4, "empty": 2, "too_long": 1, "ratio": 1, "duplicates": 1}
    assert str(report) == (
        "kept 4 of 9 pairs (44.4%); dropped 2 empty, 1 too long, 1 over the length ratio, 1 duplicates"
    )
    assert rows(cleaned) == [
        ("The house is small.", "Das Haus ist klein."),
        ("OK", "Okay gut ."),
        ("A cat.", "Eine Katze."),
        ("one two three four five six", "eins zwei"),
    ]
    assert cleaned["origin"][:] == ["o0", "o1", "o7", "o8"]
    assert cleaned.column_names == ["translation", "origin"]

    _, no_limits = clean_parallel(ds, **LANGS, max_words=None, max_ratio=None, dedup=False, num_proc=2)
    assert no_limits == CleaningReport(total=9, kept=7, empty=2, too_long=0, ratio=0, duplicates=0)


def test_clean_parallel_min_chars():
    ds = Dataset.from_dict({"translation": [{"en": "Hi", "de": "Hallo"}, {"en": "Hello", "de": "Hallo"}]})
    cleaned, report = clean_parallel(ds, **LANGS, min_chars=3)
    assert rows(cleaned) == [("Hello", "Hallo")]
    assert report.empty == 1


def test_clean_parallel_nothing_left():
    ds = Dataset.from_dict({"translation": [{"en": " ", "de": "a"}, {"en": "b c d e f g h", "de": "x"}]})
    with pytest.raises(ValueError, match="the ratio filter .* removed the last ones"):
        clean_parallel(ds, **LANGS)
    with pytest.raises(ValueError, match="the empty filter"):
        clean_parallel(ds.select([0]), **LANGS)


def test_clean_parallel_bad_arguments():
    ds = Dataset.from_dict({"translation": [{"en": "a", "de": "b"}]})
    with pytest.raises(ValueError, match="max_ratio must be a number >= 1"):
        clean_parallel(ds, **LANGS, max_ratio=0.5)
    with pytest.raises(ValueError, match=r"languages \['en', 'de'\], not \['fr'\]"):
        clean_parallel(ds, src_lang="fr", tgt_lang="de")


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizing: one policy for long pairs, in training and fine-tuning alike
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bpe():
    return train_shared_bpe([text for pair in PAIRS for text in pair] * 5, vocab_size=120, min_frequency=1)


def test_tokenize_pairs_gives_inputs_and_labels_ending_with_eos(bpe):
    encoded, dropped = tokenize_pairs(
        Dataset.from_list([{"translation": {"en": en, "de": de}} for en, de in PAIRS]), bpe, **LANGS
    )
    assert dropped == 0 and encoded.column_names == ["input_ids", "labels"]
    for (en, de), input_ids, labels in zip(PAIRS, encoded["input_ids"], encoded["labels"], strict=True):
        assert input_ids == bpe(en)["input_ids"] and labels == bpe(text_target=de)["input_ids"]
        assert input_ids[-1] == labels[-1] == bpe.eos_token_id


def test_tokenize_pairs_drops_long_pairs_on_either_side_and_never_truncates(bpe):
    short, long_source, long_target = ("a b", "a b"), ("a b " * 20, "a b"), ("a b", "a b " * 20)
    ds = Dataset.from_list([{"translation": {"en": en, "de": de}} for en, de in (short, long_source, long_target)])
    limit = len(bpe("a b " * 20)["input_ids"]) - 1
    encoded, dropped = tokenize_pairs(ds, bpe, max_length=limit, **LANGS)
    assert dropped == 2 and encoded["input_ids"] == [bpe("a b")["input_ids"]]
    # Without a limit every pair stays whole.
    everything, dropped = tokenize_pairs(ds, bpe, **LANGS)
    assert dropped == 0 and max(map(len, everything["labels"])) == limit + 1


def test_tokenize_pairs_names_a_missing_column_language_or_text(bpe):
    with pytest.raises(ValueError, match="no 'translation' column"):
        tokenize_pairs(Dataset.from_dict({"en": ["a"], "de": ["b"]}), bpe, **LANGS)
    with pytest.raises(ValueError, match=r"languages \['en', 'de'\], not \['fr'\]"):
        tokenize_pairs(Dataset.from_list([{"translation": {"en": "a", "de": "b"}}]), bpe, src_lang="en", tgt_lang="fr")
    rows = [{"translation": {"en": "a", "de": "b"}}, {"translation": {"en": "a", "de": None}}]
    with pytest.raises(ValueError, match="row 1 has no 'de' text"):
        tokenize_pairs(Dataset.from_list(rows), bpe, **LANGS)


def test_normalise_whitespace_joins_every_kind_of_whitespace_run():
    import re

    from vaswani_hf.data.parallel import normalise_whitespace

    spaces = "".join(chr(c) for c in range(0x3001) if re.fullmatch(r"\s", chr(c)))
    assert len(spaces) == 29  # tab to ideographic space, the separators U+2028/9 and U+001C-F among them
    text = f"{spaces}a{spaces}b c\u00a0\u00a0d{spaces}"
    assert normalise_whitespace(text) == "a b c d" == re.sub(r"\s+", " ", text).strip()
    assert normalise_whitespace(None) == normalise_whitespace("") == ""
