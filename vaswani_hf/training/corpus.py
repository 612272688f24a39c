"""The corpus and tokenizer of a training run: loaded, cleaned, split and tokenized from the run config's `data` section."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..files import AtomicDir
from ..run_dir import RunDir


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


def check_corpus_record(data_args, run_dir: RunDir, *, resume: bool, write: bool) -> dict | None:
    """Records in `run_dir` which build of the default corpus the run trains on (`default_corpus_record`: package
    versions and a hash of its pairs), and refuses to resume on another build, which would mix two corpora in one
    run. Other corpora are the user's own files: nothing is recorded. Returns the record."""
    from ..data.default_corpus import CACHE_SUBDIR, default_cache_dir, default_corpus_record

    if data_args.corpus != "default":
        return None
    record = default_corpus_record()
    path = run_dir.corpus_record
    if resume and path.is_file():
        started = run_dir.read_json(path)
        if started["sha256"] != record["sha256"]:
            raise SystemExit(
                f"--resume: the run in {run_dir.root} started on another build of the default corpus (packages "
                f"{started['packages']}, {started['pairs']} pairs) than the one now in "
                f"{default_cache_dir() / CACHE_SUBDIR} (packages {record['packages']}, {record['pairs']} pairs). "
                "Resume where that build is cached (VASWANI_HF_CACHE), or start a new output_dir."
            )
        return record
    if write:
        run_dir.write_json(path, record)
    return record


def tokenizer_source(data_args, train_split) -> dict:
    """What a run's tokenizer is made from: the saved tokenizer it copies (`data.tokenizer`), or the vocabulary size,
    languages and a hash of the training texts a shared BPE is trained on."""
    if data_args.tokenizer is not None:
        return {"from": str(Path(data_args.tokenizer).resolve())}
    digest = hashlib.sha256()
    for pair in train_split["translation"]:
        for lang in (data_args.src_lang, data_args.tgt_lang):
            digest.update(pair[lang].encode())
            digest.update(b"\x00")
    return {
        "trained_on_sha256": digest.hexdigest(),
        "vocab_size": data_args.vocab_size,
        "languages": [data_args.src_lang, data_args.tgt_lang],
    }


def load_or_train_tokenizer(data_args, train_split, run_dir: RunDir, *, resume: bool, log=None):
    """The run's tokenizer, kept in `run_dir.tokenizer` so the run is complete on its own: on resume, the one there;
    otherwise the one there if it was made from the same source (`tokenizer_source`, recorded beside it), else
    `data.tokenizer` if set, else a shared BPE trained on the training split (§5.1). A tokenizer left by an earlier
    run over another corpus or with other settings is replaced, and `log` says so."""
    from transformers import AutoTokenizer

    from ..tokenization import train_shared_bpe

    directory = run_dir.tokenizer
    if resume:
        return AutoTokenizer.from_pretrained(directory)
    source = tokenizer_source(data_args, train_split)
    if (directory / "tokenizer.json").exists():
        recorded = run_dir.read_json(run_dir.tokenizer_source) if run_dir.tokenizer_source.is_file() else None
        if recorded == source:
            if log:
                log(f"reusing the tokenizer in {directory}, made from the same source")
            return AutoTokenizer.from_pretrained(directory)
        if log:
            why = "it records no source" if recorded is None else f"it was made from {recorded}, not {source}"
            log(f"replacing the tokenizer in {directory}, left by an earlier run: {why}")
    if data_args.tokenizer is not None:
        tokenizer = AutoTokenizer.from_pretrained(data_args.tokenizer)
    else:
        texts = (
            pair[lang] for pair in train_split["translation"] for lang in (data_args.src_lang, data_args.tgt_lang)
        )
        tokenizer = train_shared_bpe(texts, vocab_size=data_args.vocab_size)
    # Written whole, then renamed into place: a killed run leaves no half-written tokenizer to be reused. The fixed
    # temporary name lets the next run clear what a kill left.
    with AtomicDir(directory, replace=True, temporary=directory.with_name(f".tmp-{directory.name}")) as tmp:
        tokenizer.save_pretrained(tmp)
        run_dir.write_json(tmp / run_dir.tokenizer_source.name, source)
    return tokenizer
