"""Translate a test set and score it as the paper reports: detokenized corpus BLEU (sacreBLEU) plus chrF.

`translate` batches sentences by tokens and decodes with the model's own generation config, which for this package's
models is the paper's beam search (§6.1); `translate_stream` does the same window by window, for inputs of any size,
and `translate_file` writes its windows to a file that an interrupted run continues; `score` computes both metrics
with the `evaluate` module shipped in `vaswani_hf/metrics/sacrebleu_chrf`, which loads offline from its folder.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import files
from .data.batching import length_batches, pad_ids
from .generation_vaswani import source_length_offset

logger = logging.getLogger(__name__)

METRIC_PATH = Path(__file__).resolve().parent / "metrics" / "sacrebleu_chrf"

# The generation settings that decide a translation, as `decoding_settings` reports them next to a score.
_DECODING_KEYS = (
    "num_beams",
    "length_penalty",
    "length_penalty_type",
    "max_length_offset",
    "max_new_tokens",
    "max_length",
    "early_stopping",
    "do_sample",
)


# Weight dtypes for inference, by the names the commands take.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def load_model(model_dir: str | os.PathLike, *, device: str | None = None, dtype: str = "fp32"):
    """A saved seq2seq model and its tokenizer for inference: `(model, tokenizer, device)`, the model in eval mode on
    `device` (default: cuda when available, else cpu) with weights in `dtype` ("fp32", "bf16" or "fp16").

    bf16 runs on this package's CPU path too (AMX units multiply it fast); fp16 works on a CPU but is meant for GPUs.
    `model_dir` may also be a Hub repo id such as "someone/model" when no local path of that name exists.

    Raises:
        FileNotFoundError: if `model_dir` is a local path (or cannot be a Hub repo id) but holds no saved model, or is
            neither a local folder nor a model on the Hub that could be reached.
        ValueError: if the folder's weights cannot be read (a truncated or damaged file).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id
    from safetensors import SafetensorError
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
    # Checked here because transformers takes any path it does not find for a Hub repo id, and a typo in a local path
    # then reads "Repo id must be in the form 'repo_name' or 'namespace/repo_name'".
    path = Path(model_dir)
    how = "give the folder of a saved model (save_pretrained() writes one; vaswani-train, to its output_dir/model)"
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model_dir {str(model_dir)!r} holds no config.json, so it is not a saved model: {how}"
        )
    if not path.exists():
        try:
            validate_repo_id(str(model_dir))
        except HFValidationError:
            raise FileNotFoundError(
                f"model_dir {str(model_dir)!r} does not exist: {how}, or a Hub repo id such as 'someone/model'"
            ) from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=DTYPES[dtype]).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except SafetensorError as error:
        raise ValueError(
            f"the weights in {str(model_dir)!r} cannot be read ({error}): the file is damaged or was cut short; save "
            "or copy the model again."
        ) from None
    except OSError as error:
        if path.exists():
            raise
        # transformers answers a name it cannot fetch with advice about the internet connection, which misleads when
        # the name was meant as a local folder.
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true") else ""
        raise FileNotFoundError(
            f"model_dir {str(model_dir)!r} is no folder here, and no Hub model of that name could be loaded{offline}: "
            f"{how}; a Hub name needs a network (or the model in the local Hub cache)."
        ) from error
    return model, tokenizer, device


def load_metric(**load_kwargs):
    """The `evaluate` metric computing corpus sacreBLEU and chrF (see `metrics/sacrebleu_chrf/sacrebleu_chrf.py`).

    `evaluate.load` reads a local folder without the Hub, so this works with `HF_HUB_OFFLINE=1`; it copies the script
    into the `evaluate` modules cache (`HF_MODULES_CACHE`) and imports it from there. `load_kwargs` go to
    `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id=...`).
    """
    import evaluate  # here, not at the top: importing evaluate takes seconds, and translating does not need it

    return evaluate.load(str(METRIC_PATH), **load_kwargs)


def check_sentences(name: str, sentences, first_index: int = 0) -> list[str]:
    """`sentences` as a list, refused unless it holds only str; `first_index` is the index of its first item in a
    longer input (a window of a stream), for the message."""
    # A str is a sequence too, and iterating it would silently translate or score one "sentence" per character.
    if isinstance(sentences, str):
        raise TypeError(f"{name} must be a list of sentences, not a single str; wrap it in a list")
    sentences = list(sentences)
    for index, sentence in enumerate(sentences, start=first_index):
        if not isinstance(sentence, str):
            raise TypeError(f"{name} must contain only str, but item {index} is a {type(sentence).__name__}")
    return sentences


# Lines that `translate_stream` reads, sorts and translates together (see there for the choice).
DEFAULT_WINDOW = 10_000
# Tokens per batch, each sentence counted at its output limit (`decoding_lengths`). In docs/speed.md's "Memory", 4096
# kept decoding well within the peak memory of Marian's batches of 32 sentences (the peak varies from run to run), at
# 3.1 times their speed; 8192 was 8% faster and above it.
DEFAULT_MAX_TOKENS = 4096


def translate(
    model,
    tokenizer,
    sentences: Sequence[str],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    show_progress: bool = False,
    **generate_kwargs,
) -> list[str]:
    """Translates `sentences` with `model.generate`, one hypothesis per sentence, in the order given.

    Sentences are sorted by tokenized length and grouped so that each batch, counted as batch size x the longest
    output limit in it (source length + 50 with the paper's decoding: `decoding_lengths`), stays within `max_tokens`,
    which bounds the memory of decoding. Decoding uses the model's generation config, which for this
    package's models is the paper's (beam 4, GNMT length penalty 0.6, at most source length + 50 tokens);
    `generate_kwargs` override it (e.g. `num_beams=1`, `max_new_tokens=100`). The model runs in eval mode on its own
    device under `torch.inference_mode()`, and is put back in training mode afterwards if it was in it.

    A blank sentence translates to "" without reaching the model, which would otherwise produce arbitrary text from a
    source that is only </s>. Sources longer than the model's `max_position_embeddings` are truncated to it (keeping
    their final </s>) and a warning gives how many were.

    This is `translate_stream` with one window holding all the sentences: it holds them all, their token ids and
    their translations in memory, and returns nothing before the last is done. For a large input, use
    `translate_stream` or `translate_file`.

    Raises:
        TypeError: if `sentences` is a single str or holds something other than str.
        ValueError: if `max_tokens` is not a positive int, or `generate_kwargs` ask for several outputs per sentence.
    """
    sentences = check_sentences("sentences", sentences)
    windows = translate_stream(
        model,
        tokenizer,
        sentences,
        window=max(len(sentences), 1),
        max_tokens=max_tokens,
        show_progress=show_progress,
        total=len(sentences),
        **generate_kwargs,
    )
    return [hypothesis for window in windows for hypothesis in window]


def translate_stream(
    model,
    tokenizer,
    sentences: Iterable[str],
    *,
    window: int = DEFAULT_WINDOW,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    show_progress: bool = False,
    total: int | None = None,
    **generate_kwargs,
) -> Iterator[list[str]]:
    """Translates `sentences` window by window: reads `window` of them, translates them as `translate` does (sorted
    by length into batches of at most `max_tokens` tokens), yields their hypotheses in input order, and
    only then reads the next window. Sorting within a window rather than over the whole input is what Marian's
    maxi-batches and CTranslate2's `translate_file` do.

    What is held at any time is one window (its sentences, their token ids and hypotheses) and one batch being
    decoded (bounded by `max_tokens`), whatever the size of the input: a file of millions of lines is translated in
    the memory of one window, and each window's translations can be written as soon as it is done. The default of
    10,000 lines weighs the two costs of a window: with the paper's beam search on a CPU (about 65 sentences/s for
    the model of docs/speed.md) a window is done every two to three minutes, the most an interruption loses; and it
    holds some 80 batches of typical sentences, so sorting it leaves little more padding than sorting
    the whole input would. `vaswani_hf.benchmarks.streaming` measures both paths.

    `total` (the number of sentences, when known) sizes the progress bar. Options and errors are `translate`'s; they
    are checked when this is called, before any sentence is read, and a sentence that is not a str is refused when
    its window is read.
    """
    # A str is iterable too, and would be translated one "sentence" per character.
    if isinstance(sentences, str):
        raise TypeError("sentences must be an iterable of sentences, not a single str; wrap it in a list")
    check_translation_options(model, window, max_tokens, generate_kwargs)
    return _translate_windows(model, tokenizer, sentences, window, max_tokens, show_progress, total, generate_kwargs)


def _translate_windows(model, tokenizer, sentences, window, max_tokens, show_progress, total, generate_kwargs):
    with tqdm(total=total, unit="sent", disable=not show_progress) as progress:
        for sentences_of_window in sentence_windows(sentences, window):
            yield _translate_window(model, tokenizer, sentences_of_window, max_tokens, progress, generate_kwargs)


def sentence_windows(sentences: Iterable[str], size: int) -> Iterator[list[str]]:
    """`sentences` in consecutive lists of `size` (the last one shorter), each read only when it is asked for.

    Raises:
        TypeError: when a list read holds something other than str (naming its index in `sentences`).
    """
    iterator = iter(sentences)
    read = 0
    while window := check_sentences("sentences", itertools.islice(iterator, size), first_index=read):
        read += len(window)
        yield window


def _translate_window(model, tokenizer, sentences: list[str], max_tokens: int, progress, generate_kwargs) -> list[str]:
    """The hypotheses of one window of sentences, in their order (see `translate`)."""
    hypotheses = [""] * len(sentences)
    todo = [index for index, sentence in enumerate(sentences) if sentence.strip()]
    progress.update(len(sentences) - len(todo))
    if not todo:
        return hypotheses
    ids = encode_sentences(
        [sentences[index] for index in todo], tokenizer, getattr(model.config, "max_position_embeddings", None)
    )
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in length_batches(decoding_lengths(model.generation_config, ids, generate_kwargs), max_tokens):
                inputs = pad_ids([ids[position] for position in batch], pad_token_id, model.device)
                output = model.generate(**inputs, **generate_kwargs)
                # return_dict_in_generate=True gives a ModelOutput that holds the ids as `sequences`.
                sequences = getattr(output, "sequences", output)
                texts = tokenizer.batch_decode(sequences, skip_special_tokens=True)
                for position, text in zip(batch, texts, strict=True):
                    hypotheses[todo[position]] = text
                progress.update(len(batch))
    finally:
        model.train(was_training)
    return hypotheses


def decoding_lengths(defaults, ids: Sequence[Sequence[int]], generate_kwargs: dict) -> list[int]:
    """What each sentence counts for in a batch of `max_tokens`, decoded by a model whose generation config is
    `defaults` with `generate_kwargs`: the positions its output may reach (source length + 50 with the paper's limit,
    else the call's `max_new_tokens` or `max_length`), or its source length where that is longer. Beam search keeps that many positions of keys and values for each beam, in a cache sized for the batch's
    longest limit, and that cache and the beams' scores over the vocabulary are most of decoding's memory. Counted
    by the source alone, batches of short sentences, whose limit is many times their length, set the peak memory,
    while batches of long ones were needlessly small (docs/speed.md, "Memory")."""
    offset = source_length_offset(defaults, generate_kwargs.get("generation_config"), generate_kwargs)
    if offset is not None:
        return [len(sequence) + offset for sequence in ids]
    config = generate_kwargs.get("generation_config") or defaults
    new_tokens = generate_kwargs.get("max_new_tokens", getattr(config, "max_new_tokens", None))
    limit = new_tokens if new_tokens is not None else generate_kwargs.get("max_length", config.max_length)
    return [max(len(sequence), limit or 0) for sequence in ids]


def check_translation_options(model, window: int, max_tokens: int, generate_kwargs: dict) -> None:
    """Refuses, before anything is read or decoded, options that `translate_stream` cannot honour."""
    for name, value in (("window", window), ("max_tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if generate_kwargs.get("num_return_sequences", 1) != 1:
        raise ValueError("translate returns one hypothesis per sentence; do not pass num_return_sequences")
    check_output_limit(model, generate_kwargs)


def translate_file(
    model,
    tokenizer,
    sentences: Iterable[str],
    output: str | os.PathLike,
    *,
    source: dict | None,
    restart: bool = False,
    window: int = DEFAULT_WINDOW,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    show_progress: bool = False,
    **generate_kwargs,
) -> int:
    """Translates `sentences` into the text file `output`, one line each, window by window (`translate_stream`), so
    that a kill or a crash loses at most the window being translated and a rerun continues after the last one done.

    The windows go to `<output>.partial`, each flushed to disk before a progress record `<output>.partial.json`
    counts it; `output` appears, whole, when the last one is written (`files.PartialFile`). The record identifies the
    run by `source` (`sentences_fingerprint` of the same sentences), the model's weights as loaded
    (`weights_fingerprint`, dtype included) and the decoding settings. A later call with the same three continues
    after the lines already written (the `sentences` before them are read, not translated); one with another input,
    model or decoding is refused, naming what differs, unless `restart` discards the unfinished file. `max_tokens`
    and `window` are recorded but may change: they only regroup the sentences into other batches, and a smaller
    `max_tokens` is how a run that ran out of memory goes on. `source=None` (sentences that cannot be read again,
    such as standard input) writes the same way but cannot be continued: a rerun starts afresh.

    Returns the number of lines kept from an interrupted run (0 when it started afresh).

    Raises:
        ValueError: as `translate_stream`, before anything is written; for the unfinished output of a run with
            another input, model or decoding.
        FileExistsError: for a `<output>.partial` without a record, which this function did not write.
    """
    check_translation_options(model, window, max_tokens, generate_kwargs)
    identity = None
    if source is not None:
        decoding = {**generate_kwargs, **decoding_settings(model, generate_kwargs)}
        identity = {"input": source, "model": weights_fingerprint(model), "decoding": decoding}
    notes = {"model_dir": str(model.name_or_path), "max_tokens": max_tokens, "window": window}
    with files.PartialFile(output, identity, notes=notes, restart=restart) as partial:
        kept = partial.lines
        if kept:
            logger.warning(
                "%s holds the first %d lines of an interrupted run with the same input, model and decoding: "
                "continuing after them (--restart starts from the first line)",
                partial.path,
                kept,
            )
        windows = translate_stream(
            model,
            tokenizer,
            itertools.islice(sentences, kept, None),
            window=window,
            max_tokens=max_tokens,
            show_progress=show_progress,
            total=None if source is None else source["lines"] - kept,
            **generate_kwargs,
        )
        for hypotheses in windows:
            partial.append("".join(hypothesis + "\n" for hypothesis in hypotheses), len(hypotheses))
    return kept


def sentences_fingerprint(sentences: Iterable[str]) -> dict:
    """`{"lines": count, "sha256": digest}` of `sentences` (each in UTF-8 followed by a line break), computed in one
    pass without keeping them: what `translate_file` records of its input. Reading a file through
    `files.iter_lines` for it also checks that the file is UTF-8, before any translating."""
    digest = hashlib.sha256()
    count = 0
    for sentence in sentences:
        digest.update(sentence.encode("utf-8") + b"\n")
        count += 1
    return {"lines": count, "sha256": digest.hexdigest()}


def weights_fingerprint(model) -> dict:
    """`{"sha256": digest, "dtype": name}` of a model's weights as loaded: every tensor of its state dict, by name,
    shape, dtype and bytes. The same weights give the same digest from any folder (a copy, a Hub download); other
    weights, or the same in another dtype, another."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return {"sha256": digest.hexdigest(), "dtype": str(model.dtype).removeprefix("torch.")}


def check_output_limit(model, generate_kwargs: dict) -> None:
    """Refuses, before any decoding, an explicit output limit beyond the model's positions: the decoder reads the
    start token and every generated token but the last at positions of its own, so `max_new_tokens` can be at most
    `max_position_embeddings` (and `max_length`, which counts the start token, one more). Found only when a sentence
    runs that long, it would end the work of all the others with it."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is None:
        return
    for name, most in (("max_new_tokens", positions), ("max_length", positions + 1)):
        value = generate_kwargs.get(name)
        if value is not None and value > most:
            raise ValueError(
                f"{name}={value} is more than this model can decode: it has {positions} positions "
                f"(max_position_embeddings), so {name} can be at most {most}."
            )


def encode_sentences(sentences: list[str], tokenizer, max_positions: int | None) -> list[list[int]]:
    """Token ids with special tokens, sources longer than `max_positions` truncated with a warning."""
    # verbose=False: the tokenizer's own warning about model_max_length would come before the count below.
    ids = tokenizer(sentences, verbose=False)["input_ids"]
    if max_positions is None:
        return ids
    too_long = [index for index, sequence in enumerate(ids) if len(sequence) > max_positions]
    if too_long:
        logger.warning(
            "%d of %d sources are longer than the model's max_position_embeddings=%d tokens and were truncated to it",
            len(too_long),
            len(sentences),
            max_positions,
        )
        # Truncating through the tokenizer keeps the final </s> that the model saw in training.
        truncated = tokenizer(
            [sentences[index] for index in too_long], truncation=True, max_length=max_positions, verbose=False
        )["input_ids"]
        for index, sequence in zip(too_long, truncated, strict=True):
            ids[index] = sequence
    return ids


def score(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], **metric_kwargs) -> dict:
    """Corpus sacreBLEU and chrF of detokenized `hypotheses` against `references` (one str per hypothesis, or a list
    of several per hypothesis), computed by the metric of `load_metric`.

    Returns `bleu`, `chrf`, `bleu_signature`, `chrf_signature` and `bleu_details` (`precisions`, `bp`, `ratio`,
    `sys_len`, `ref_len`). `metric_kwargs` go to the metric: `tokenize` (sacrebleu's BLEU tokenizer, "13a" by
    default) and `lowercase`.

    Raises:
        ValueError: if there are no hypotheses, or not as many references as hypotheses.
    """
    hypotheses = check_sentences("hypotheses", hypotheses)
    if isinstance(references, str):
        raise TypeError("references must be a list of sentences, not a single str; wrap it in a list")
    references = list(references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses but {len(references)} references; score needs one reference (or one "
            "list of references) per hypothesis"
        )
    if not hypotheses:
        raise ValueError("there is nothing to score: hypotheses and references are empty")
    metric = load_metric(keep_in_memory=True)
    return metric.compute(predictions=hypotheses, references=references, **metric_kwargs)


def evaluate_model(
    model, tokenizer, sources: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], **kwargs
) -> tuple[dict, list[str]]:
    """Translates `sources` with `translate` and scores them with `score`; returns `(scores, hypotheses)`.

    `kwargs` go to `translate` (`max_tokens`, `show_progress` and `generate()` parameters).

    Raises:
        ValueError: if `sources` and `references` differ in length (checked before translating).
    """
    sources = check_sentences("sources", sources)
    if len(sources) != len(references):
        raise ValueError(f"got {len(sources)} sources but {len(references)} references; they must be parallel")
    hypotheses = translate(model, tokenizer, sources, **kwargs)
    return score(hypotheses, references), hypotheses


def decoding_settings(model, generate_kwargs: dict) -> dict:
    """The decoding settings `generate()` runs with: the model's generation config, overridden by `generate_kwargs`.
    Meant for reports next to a score."""
    return {key: generate_kwargs.get(key, getattr(model.generation_config, key, None)) for key in _DECODING_KEYS}
