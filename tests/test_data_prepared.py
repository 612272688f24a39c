"""The prepared corpus (vaswani_hf.data.prepared): streamed cleaning and tokenization equal to the in-memory path,
cached by content, reused without reading the corpus again, and never left half-written."""

import json

import pytest
from datasets import Dataset

from vaswani_hf.data import prepared
from vaswani_hf.data.parallel import clean_parallel, encode_pairs, load_parallel, parallel_source, tokenize_pairs
from vaswani_hf.data.prepared import prepare_text, prepare_tokens, sequence_lengths

ROWS = [
    ("the house is small", "das Haus ist klein"),
    ("  the   house is\tsmall ", "das Haus ist klein"),  # a duplicate once its whitespace is normalised
    ("", "leer"),
    ("one two three four five six seven eight nine", "eins"),  # over the length ratio
    ("a green tree", "ein grüner Baum"),
    ("the house is small", "das Haus ist klein"),  # an exact duplicate, in a later chunk
    ("the dog runs", "der Hund läuft"),
]


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "train.en").write_text("".join(en + "\n" for en, _ in ROWS), encoding="utf-8")
    (tmp_path / "train.de").write_text("".join(de + "\n" for _, de in ROWS), encoding="utf-8")
    return parallel_source(tmp_path / "train", src_lang="en", tgt_lang="de")


def prepare(source, cache, **settings):
    settings = {"clean": True, "max_words": 250, "max_ratio": 3.0, **settings}
    return prepare_text(source, cache, src_lang="en", tgt_lang="de", **settings)


def test_streamed_cleaning_equals_clean_parallel_across_chunks(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(prepared, "CHUNK_PAIRS", 2)  # duplicates and filters across chunk boundaries
    text = prepare(corpus, tmp_path / "cache")
    expected, report = clean_parallel(
        load_parallel(tmp_path / "train", src_lang="en", tgt_lang="de"), src_lang="en", tgt_lang="de"
    )
    assert text.dataset["translation"] == expected["translation"]
    assert text.report == report and report.duplicates == 2 and report.kept == 3
    assert text.dataset.features == expected.features


def test_a_second_start_reads_the_cache_not_the_corpus(corpus, tmp_path):
    cache = tmp_path / "cache"
    first = prepare(corpus, cache)

    def not_read():
        raise AssertionError("the corpus was read again")

    said = []
    again = prepare_text(
        type(corpus)(corpus.name, not_read, files=corpus.files), cache, src_lang="en", tgt_lang="de", clean=True,
        max_words=250, max_ratio=3.0, log=said.append,
    )  # fmt: skip
    assert again.key == first.key and again.dataset["translation"] == first.dataset["translation"]
    assert said == [f"corpus: the cleaned pairs of {corpus.name} from {first.folder} (3 pairs)"]
    # Other content or other settings are another folder.
    (tmp_path / "train.de").write_text("".join(de + "!\n" for _, de in ROWS), encoding="utf-8")
    assert prepare(corpus, cache).key != first.key
    assert prepare(corpus, cache, max_ratio=None).key not in (first.key,)
    assert len(list(cache.glob("text-*"))) == 3


def test_without_cleaning_every_pair_is_kept_as_it_is(corpus, tmp_path):
    text = prepare(corpus, tmp_path / "cache", clean=False)
    assert [(p["en"], p["de"]) for p in text.dataset["translation"]] == ROWS
    assert text.report is None


def test_an_interrupted_preparation_leaves_nothing_to_reuse(corpus, tmp_path):
    def broken():
        yield ("a house", "ein Haus")
        raise OSError("disk gone")

    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="disk gone"):
        prepare(type(corpus)(corpus.name, broken, files=corpus.files), cache)
    assert list(cache.iterdir()) == []
    assert prepare(corpus, cache).record["pairs"] == 3


def test_errors_name_the_problem(tmp_path):
    in_memory = parallel_source(
        Dataset.from_dict({"translation": [{"en": "a", "de": "b"}]}), src_lang="en", tgt_lang="de"
    )
    with pytest.raises(ValueError, match="held in memory.*save_to_disk"):
        prepare(in_memory, tmp_path)
    (tmp_path / "blank.tsv").write_text(" \t \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cleaning removed every pair .*the empty filter"):
        prepare(parallel_source(tmp_path / "blank.tsv", src_lang="en", tgt_lang="de"), tmp_path / "cache")
    (tmp_path / "empty.tsv").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty: it holds no sentence pairs"):
        prepare(parallel_source(tmp_path / "empty.tsv", src_lang="en", tgt_lang="de"), tmp_path / "cache")
    (tmp_path / "a.en").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "a.de").write_text("eins\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"a.en' has 2 lines but .*a.de' has 1"):
        prepare(parallel_source(tmp_path / "a", src_lang="en", tgt_lang="de"), tmp_path / "cache")


def test_tokens_equal_tokenize_pairs_and_are_reused(corpus, tmp_path, word_pairs_tokenizer, monkeypatch):
    monkeypatch.setattr(prepared, "TOKENIZE_PAIRS", 2)  # several steps, one encoded ahead
    cache = tmp_path / "cache"
    text = prepare(corpus, cache)
    whole, _ = tokenize_pairs(text.dataset, word_pairs_tokenizer, src_lang="en", tgt_lang="de")
    longest = sorted(max(len(s), len(t)) for s, t in zip(whole["input_ids"], whole["labels"], strict=True))
    limit = longest[0]  # drops the longer pairs of the three
    over = sum(length > limit for length in longest)
    assert over >= 1
    tokens, dropped = prepare_tokens(text, word_pairs_tokenizer, cache, src_lang="en", tgt_lang="de", max_length=limit)
    expected, expected_dropped = tokenize_pairs(
        text.dataset, word_pairs_tokenizer, src_lang="en", tgt_lang="de", max_length=limit
    )
    assert tokens["input_ids"] == expected["input_ids"] and tokens["labels"] == expected["labels"]
    assert dropped == expected_dropped == over
    assert list(sequence_lengths(tokens, "labels")) == [len(ids) for ids in expected["labels"]]
    record = json.loads(next(cache.glob("tokens-*/record.json")).read_text())
    assert record["pairs"] == 3 - over and record["dropped"] == over

    monkeypatch.setattr(prepared, "encode_pairs", lambda *args: pytest.fail("tokenized again"))
    again, _ = prepare_tokens(text, word_pairs_tokenizer, cache, src_lang="en", tgt_lang="de", max_length=limit)
    assert again["input_ids"] == tokens["input_ids"]
    monkeypatch.undo()
    prepare_tokens(text, word_pairs_tokenizer, cache, src_lang="en", tgt_lang="de", max_length=None)
    assert len(list(cache.glob("tokens-*"))) == 2


def test_the_backend_encoding_equals_the_tokenizer_call(word_pairs_tokenizer):
    sources, targets = ["the house is small", "", "ünknown wörds"], ["das Haus", "x", ""]
    assert encode_pairs(word_pairs_tokenizer, sources, targets) == (
        word_pairs_tokenizer(sources)["input_ids"],
        word_pairs_tokenizer(text_target=targets)["input_ids"],
    )
