"""The corpus and tokenizer of a training run (vaswani_hf.training.corpus): a tokenizer that does not fit the model is
refused."""

import json
from pathlib import Path

import pytest

from vaswani_hf.run_dir import RunDir
from vaswani_hf.training.corpus import check_corpus_record, check_tokenizer, load_or_train_tokenizer


def test_check_tokenizer_names_the_mismatch(tiny_config):
    class Tok:
        pad_token_id, eos_token_id = 0, 2

        def __len__(self):
            return 100

    with pytest.raises(ValueError, match="100 tokens.*vocabulary has 64"):
        check_tokenizer(tiny_config(), Tok())
    Tok.__len__ = lambda self: 64
    Tok.eos_token_id = 3
    with pytest.raises(ValueError, match="eos_token_id"):
        check_tokenizer(tiny_config(), Tok())


def test_a_run_records_its_corpus_build_and_resumes_only_on_it(tmp_path, monkeypatch):
    """A run on the default corpus records which build it started on; resuming on another build (the packages moved
    and the cache was rebuilt) is refused rather than mixing two corpora in one run."""
    from types import SimpleNamespace

    from vaswani_hf.data import default_corpus

    data = SimpleNamespace(corpus="default")
    build = {"packages": {"trans-de-en": "1.9-6"}, "sha256": "a" * 64, "pairs": {"train": 10}}
    monkeypatch.setattr(default_corpus, "default_corpus_record", lambda: dict(build))
    run_dir = RunDir(tmp_path)
    assert check_corpus_record(data, run_dir, resume=False, write=True) == build
    assert json.loads((tmp_path / "corpus.json").read_text()) == build
    assert check_corpus_record(data, run_dir, resume=True, write=True) == build
    build.update(packages={"trans-de-en": "1.9-7"}, sha256="b" * 64)
    with pytest.raises(SystemExit, match=r"another build of the default corpus.*1\.9-6.*1\.9-7.*new output_dir"):
        check_corpus_record(data, run_dir, resume=True, write=True)
    other = RunDir(tmp_path / "other")
    assert check_corpus_record(SimpleNamespace(corpus="my.tsv"), other, resume=False, write=True) is None
    assert not other.root.exists()


def data_args(**overrides):
    from types import SimpleNamespace

    return SimpleNamespace(**{"tokenizer": None, "vocab_size": 60, "src_lang": "en", "tgt_lang": "de", **overrides})


def pairs(words: str, cache: Path):
    """The prepared training text of a small corpus built around `words`."""
    from vaswani_hf.data.parallel import parallel_source
    from vaswani_hf.data.prepared import prepare_text

    path = cache / f"{words}.jsonl"
    rows = [{"en": f"{w} {words}", "de": f"{words} {w}"} for w in "abcdefgh"] * 5
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    source = parallel_source(path, src_lang="en", tgt_lang="de")
    return prepare_text(source, cache, src_lang="en", tgt_lang="de", clean=False, max_words=None, max_ratio=None)


def test_a_tokenizer_left_by_a_run_over_another_corpus_is_replaced_and_said(tmp_path):
    """A failed run leaves its tokenizer; a new run over another corpus into the same folder must not reuse it
    silently. The tokenizer records what it was made from; the same source reuses it, another replaces it, both said
    out loud."""
    run_dir, said = RunDir(tmp_path / "run"), []
    cache = tmp_path / "cache"
    cache.mkdir()
    house, tree = pairs("the house", cache), pairs("ein Baum", cache)

    def load(text, **overrides):
        said.clear()
        return load_or_train_tokenizer(data_args(**overrides), text, run_dir, resume=False, log=said.append)

    first = load(house)
    assert json.loads(run_dir.tokenizer_source.read_text())["vocab_size"] == 60
    assert said == ["tokenizer: a shared BPE trained on 40 pairs in 0 s"]
    load(house)
    assert len(said) == 1 and said[0].startswith("reusing the tokenizer")
    other = load(tree)
    assert said[0].startswith(f"replacing the tokenizer in {run_dir.tokenizer}") and "made from" in said[0]
    assert first.get_vocab() != other.get_vocab()
    load(tree, vocab_size=70)
    assert said[0].startswith("replacing") and "'vocab_size': 60" in said[0]
    run_dir.tokenizer_source.unlink()  # a tokenizer from before the record
    load(tree, vocab_size=70)
    # The BPE of this corpus and size was trained once, and is loaded from beside the prepared text since.
    assert said == [f"replacing the tokenizer in {run_dir.tokenizer}, left by an earlier run: it records no source"]
    assert sorted(p.name for p in run_dir.root.iterdir()) == ["tokenizer"]  # no temporary folder left
