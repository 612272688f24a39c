"""The corpus and tokenizer of a training run: loaded, cleaned, split and tokenized from the run config's `data` section."""

from __future__ import annotations

import time
from pathlib import Path

from datasets import DatasetDict

from ..data.prepared import PreparedText, prepare_text
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


def prepared_cache_dir() -> Path:
    """Where prepared corpora are kept: `prepared/` in the package's cache (`VASWANI_HF_CACHE`)."""
    from ..data.default_corpus import default_cache_dir

    return default_cache_dir() / "prepared"


def prepare_corpus(data_args, log=None) -> tuple[DatasetDict, PreparedText]:
    """The run's corpus: a `DatasetDict` with `train` (cleaned, memory-mapped from the prepared cache) and
    `validation` when there is one, and the `PreparedText` the training pairs are tokenized from.

    `data_args.corpus == "default"` is the built-in English-German corpus; anything else goes to
    `vaswani_hf.data.parallel.parallel_source`, with `data_args.validation` read by `load_parallel`. The training
    split is streamed through cleaning into the cache once (`vaswani_hf.data.prepared`); later starts open it there.
    """
    from ..data.parallel import load_parallel, parallel_source

    splits = {}
    if data_args.corpus == "default":
        from ..data.default_corpus import load_default_corpus

        if {data_args.src_lang, data_args.tgt_lang} != {"en", "de"}:
            raise ValueError(
                f"The default corpus is English-German; data.src_lang/tgt_lang are {data_args.src_lang!r}/"
                f"{data_args.tgt_lang!r}. Use en/de, or point data.corpus at your own files."
            )
        default = load_default_corpus()
        source = parallel_source(default["train"], src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang)
        splits = {name: split for name, split in default.items() if name != "train"}
    else:
        source = parallel_source(data_args.corpus, src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang)
    text = prepare_text(
        source,
        prepared_cache_dir(),
        src_lang=data_args.src_lang,
        tgt_lang=data_args.tgt_lang,
        clean=data_args.clean,
        max_words=data_args.max_words,
        max_ratio=data_args.max_ratio,
        log=log,
    )
    corpus = DatasetDict(train=text.dataset, **splits)
    if data_args.validation is not None:
        corpus["validation"] = load_parallel(
            data_args.validation, src_lang=data_args.src_lang, tgt_lang=data_args.tgt_lang, split="validation"
        )
    return corpus, text


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


def tokenizer_source(data_args, text: PreparedText) -> dict:
    """What a run's tokenizer is made from: the saved tokenizer it copies (`data.tokenizer`), or the vocabulary size,
    languages and prepared training text (its key: the corpus's content and the cleaning) a shared BPE is trained on."""
    if data_args.tokenizer is not None:
        return {"from": str(Path(data_args.tokenizer).resolve())}
    return {
        "trained_on": text.key,
        "vocab_size": data_args.vocab_size,
        "languages": [data_args.src_lang, data_args.tgt_lang],
    }


def shared_bpe(data_args, text: PreparedText, log=None):
    """The shared BPE (§5.1) of `data.vocab_size` tokens trained on the prepared training text, kept beside it so that
    every later run on the same corpus loads it instead of training again."""
    from transformers import AutoTokenizer

    from ..tokenization import train_shared_bpe

    folder = text.folder / f"tokenizer-{data_args.vocab_size}"
    if not (folder / "tokenizer.json").is_file():
        started = time.perf_counter()
        tokenizer = train_shared_bpe(
            text.texts((data_args.src_lang, data_args.tgt_lang)), vocab_size=data_args.vocab_size
        )
        try:
            with AtomicDir(folder) as staging:
                tokenizer.save_pretrained(staging)
        except FileExistsError:
            pass  # another process trained the same one first
        if log:
            log(
                f"tokenizer: a shared BPE trained on {text.record['pairs']} pairs in {time.perf_counter() - started:.0f} s"
            )
    return AutoTokenizer.from_pretrained(folder)


def load_or_train_tokenizer(data_args, text: PreparedText, run_dir: RunDir, *, resume: bool, log=None):
    """The run's tokenizer, kept in `run_dir.tokenizer` so the run is complete on its own: on resume, the one there;
    otherwise the one there if it was made from the same source (`tokenizer_source`, recorded beside it), else
    `data.tokenizer` if set, else the shared BPE of the prepared training text (`shared_bpe`). A tokenizer left by an
    earlier run over another corpus or with other settings is replaced, and `log` says so."""
    from transformers import AutoTokenizer

    directory = run_dir.tokenizer
    if resume:
        return AutoTokenizer.from_pretrained(directory)
    source = tokenizer_source(data_args, text)
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
        tokenizer = shared_bpe(data_args, text, log)
    # Written whole, then renamed into place: a killed run leaves no half-written tokenizer to be reused. The fixed
    # temporary name lets the next run clear what a kill left.
    with AtomicDir(directory, replace=True, temporary=directory.with_name(f".tmp-{directory.name}")) as tmp:
        tokenizer.save_pretrained(tmp)
        run_dir.write_json(tmp / run_dir.tokenizer_source.name, source)
    return tokenizer
