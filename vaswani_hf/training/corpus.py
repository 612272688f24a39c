"""The corpus and tokenizer of a training run: loaded, cleaned, split and tokenized from the run config's `data` section."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def check_tokenizer(config, tokenizer) -> None:
    """A clear error when a tokenizer cannot feed the model: ids beyond the vocabulary or other special ids."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {config.vocab_size}: the model "
            "was built for another tokenizer. Use the tokenizer saved with the model."
        )
    for name in ("pad_token_id", "eos_token_id"):
        if getattr(tokenizer, name) != getattr(config, name):
            raise ValueError(
                f"tokenizer.{name} is {getattr(tokenizer, name)} but the model's config says "
                f"{getattr(config, name)}: the model was built for another tokenizer."
            )


def prepare_corpus(data_args, log=None):
    """The run's `DatasetDict`: `train` (cleaned), and `validation` plus any test splits the corpus has.

    `data_args.corpus == "default"` is the built-in English-German corpus; anything else goes to
    `vaswani_hf.data.parallel.load_parallel`, with `data_args.validation` the same way.
    """
    from datasets import DatasetDict

    from ..data.parallel import clean_parallel, load_parallel

    if data_args.corpus == "default":
        from ..data.default_corpus import load_default_corpus

        if {data_args.src_lang, data_args.tgt_lang} != {"en", "de"}:
            raise ValueError(
                f"The default corpus is English-German; data.src_lang/tgt_lang are {data_args.src_lang!r}/"
                f"{data_args.tgt_lang!r}. Use en/de, or point data.corpus at your own files."
            )
        corpus = DatasetDict(load_default_corpus())
    else:
        corpus = DatasetDict(
            train=load_parallel(data_args.corpus, src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang)
        )
    if data_args.validation is not None:
        corpus["validation"] = load_parallel(
            data_args.validation, src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang, split="validation"
        )
    if data_args.clean:
        corpus["train"], report = clean_parallel(
            corpus["train"],
            src_lang=data_args.src_lang,
            tgt_lang=data_args.tgt_lang,
            max_words=data_args.max_words,
            max_ratio=data_args.max_ratio,
        )
        if log:
            log(f"cleaning: {report}")
    return corpus


CORPUS_RECORD = "corpus.json"


def check_corpus_record(data_args, run_dir: Path, *, resume: bool, write: bool) -> dict | None:
    """Records in `run_dir` which build of the default corpus the run trains on (`default_corpus_record`: package
    versions and a hash of its pairs), and refuses to resume on another build, which would mix two corpora in one
    run. Other corpora are the user's own files: nothing is recorded. Returns the record."""
    import json

    from ..data.default_corpus import CACHE_SUBDIR, default_cache_dir, default_corpus_record
    from ..files import write_atomic

    if data_args.corpus != "default":
        return None
    record = default_corpus_record()
    path = run_dir / CORPUS_RECORD
    if resume and path.is_file():
        started = json.loads(path.read_text(encoding="utf-8"))
        if started["sha256"] != record["sha256"]:
            raise SystemExit(
                f"--resume: the run in {run_dir} started on another build of the default corpus (packages "
                f"{started['packages']}, {started['pairs']} pairs) than the one now in "
                f"{default_cache_dir() / CACHE_SUBDIR} (packages {record['packages']}, {record['pairs']} pairs). "
                "Resume where that build is cached (VASWANI_HF_CACHE), or start a new output_dir."
            )
        return record
    if write:
        write_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


def load_or_train_tokenizer(data_args, train_split, directory: Path, *, resume: bool):
    """The run's tokenizer, kept in `directory` so the run is complete on its own: the one already there (on
    resume), else `data.tokenizer` if set, else a shared BPE trained on the training split (§5.1)."""
    from transformers import AutoTokenizer

    from ..tokenization import train_shared_bpe

    if resume or (directory / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(directory)
    if data_args.tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(data_args.tokenizer)
    else:
        texts = (
            pair[lang] for pair in train_split["translation"] for lang in (data_args.src_lang, data_args.tgt_lang)
        )
        tokenizer = train_shared_bpe(texts, vocab_size=data_args.vocab_size)
    tmp = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, directory)
    return tokenizer
