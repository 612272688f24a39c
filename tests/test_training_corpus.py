"""The corpus and tokenizer of a training run (vaswani_hf.training.corpus): a tokenizer that does not fit the model is
refused."""

import pytest

from vaswani_hf.training import corpus as training_corpus
from vaswani_hf.training.corpus import check_corpus_record, check_tokenizer


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
    assert check_corpus_record(data, tmp_path, resume=False, write=True) == build
    assert check_corpus_record(data, tmp_path, resume=True, write=True) == build
    build.update(packages={"trans-de-en": "1.9-7"}, sha256="b" * 64)
    with pytest.raises(SystemExit, match=r"another build of the default corpus.*1\.9-6.*1\.9-7.*new output_dir"):
        check_corpus_record(data, tmp_path, resume=True, write=True)
    assert check_corpus_record(SimpleNamespace(corpus="my.tsv"), tmp_path / "other", resume=False, write=True) is None
    assert not (tmp_path / "other").exists()
    assert training_corpus.CORPUS_RECORD == "corpus.json"
