"""A translation pipeline for transformers 5.x.

transformers 5 removed the ``translation``, ``text2text-generation`` and ``summarization`` pipeline tasks (see
``REMOVED_TASKS`` in ``transformers/pipelines/__init__.py``) together with ``TranslationPipeline``. This module restores
a translation pipeline for any encoder-decoder model with ``generate()`` (ours, ``MarianMTModel``, ...).

This file is self-contained on purpose: it is also copied next to saved model weights and loaded as remote code
(``custom_pipelines`` entry of ``config.json``, ``trust_remote_code=True``), so it only imports ``transformers`` and
``torch`` absolutely and nothing from ``vaswani_hf``.
"""

from __future__ import annotations

import copy
import types

import torch
from torch.utils.data import Dataset
from transformers import Pipeline
from transformers.utils import ModelOutput, logging

logger = logging.get_logger(__name__)

# Tokenizers that were created without a known maximum length report this huge sentinel as `model_max_length`.
_UNSET_MODEL_MAX_LENGTH = int(1e29)


class TranslationPipeline(Pipeline):
    """
    Translates text with an encoder-decoder model that can `generate()` (e.g. the Vaswani et al. Transformer of this
    package, or `MarianMTModel`). It restores, for transformers 5.x, the `TranslationPipeline` that transformers 4.x
    had and transformers 5 removed.

    Example:

    ```python
    >>> from transformers import AutoTokenizer, MarianMTModel
    >>> from vaswani_hf.pipeline_translation import TranslationPipeline

    >>> model = MarianMTModel.from_pretrained("path/to/opus-mt-en-de")
    >>> tokenizer = AutoTokenizer.from_pretrained("path/to/opus-mt-en-de")
    >>> translator = TranslationPipeline(model=model, tokenizer=tokenizer, task="translation")
    >>> translator("How old are you?")
    [{'translation_text': 'Wie alt sind Sie?'}]
    >>> translator(["Hello.", "", "Thank you."], batch_size=2)
    [{'translation_text': 'Hallo.'}, {'translation_text': ''}, {'translation_text': 'Danke.'}]
    >>> translator("Hello.", num_beams=4, num_return_sequences=2, max_new_tokens=20)
    [{'translation_text': 'Hallo.'}, {'translation_text': 'Hallo!'}]
    ```

    A model saved with this file and a `custom_pipelines` entry in its `config.json` loads with
    `transformers.pipeline(model="path/to/saved", trust_remote_code=True)`.

    Return shapes (those of the transformers 4.x `TranslationPipeline`):

    - a single string returns a list of dicts, one per returned sequence: `[{"translation_text": ...}]`, or
      `num_return_sequences` dicts when that is > 1;
    - a list of strings returns one entry per input: a flat list of dicts `[{...}, {...}]` when every input has
      exactly one result, otherwise (`num_return_sequences` > 1) a list of lists of dicts `[[{...}, {...}], ...]`;
    - `[]` returns `[]`;
    - a generator or a `torch.utils.data.Dataset` of strings is streamed: the call returns an iterator that yields one
      list of dicts per input.

    Each dict holds `translation_text` (`str`) and/or, with `return_tensors=True`, `translation_token_ids`
    (`list[int]`: the ids produced by `generate()`, starting with the decoder start token and ending with the EOS token
    when one was generated; the padding added to batch several outputs is removed).

    Empty inputs: an empty or whitespace-only string translates to `""` and `[]` token ids without running `generate()`
    for that item. The translation of an empty source is empty, whereas generating from an empty (or EOS-only)
    encoder input makes the model produce arbitrary text. Inside a batch, the empty items are left out of the
    `generate()` call and the other items are translated as usual.

    Input length: by default (`truncation=True`) inputs are truncated to the tokenizer's `model_max_length` or the
    model's `max_position_embeddings`, whichever is smaller, so that a very long input does not crash the model.

    Generation: any parameter of `generate()` / `GenerationConfig` (`max_length`, `max_new_tokens`, `num_beams`,
    `do_sample`, `length_penalty`, `early_stopping`, `num_return_sequences`, `generation_config`, ...) can be passed to
    the constructor (applies to every call) or to a call, directly or as `generate_kwargs={...}`. As with the 4.x
    pipeline, `max_length` is the maximum *generation* length, not an input length (use
    `tokenizer_encode_kwargs={"max_length": n}` to truncate inputs to `n` tokens). Parameters that are not passed come
    from the model's own `generation_config` (beam size, length penalty, maximum length...): the pipeline adds no
    generation defaults of its own, except the tokenizer's pad token id as `pad_token_id` when the model's generation
    config has none.

    Multilingual tokenizers with `_build_translation_inputs` (NLLB, M2M100, mBART...) get `src_lang`/`tgt_lang`, passed
    as parameters or read from a task name such as `"translation_en_to_fr"`, as in 4.x.
    """

    # Generation parameters are handled here rather than by `Pipeline`, whose handling of them changed from one 5.x
    # release to the next: they pass through `_sanitize_parameters` like every other parameter, at init and per call.
    # The pipeline adds no generation defaults of its own: the model's generation_config decides (e.g. "max output
    # = input + 50").
    _pipeline_calls_generate = False
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prefix = getattr(self.model.config, "prefix", None)
        if not self.model.can_generate():
            raise ValueError(
                f"{type(self).__name__} needs a model that can `generate()`, e.g. an encoder-decoder model; "
                f"{type(self.model).__name__} cannot."
            )
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer.")

    # ------------------------------------------------------------------ parameters

    def _sanitize_parameters(
        self,
        return_tensors=None,
        return_text=None,
        clean_up_tokenization_spaces=None,
        skip_special_tokens=None,
        truncation=None,
        prefix=None,
        src_lang=None,
        tgt_lang=None,
        tokenizer_encode_kwargs=None,
        generate_kwargs=None,
        **kwargs,
    ):
        preprocess_params = {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if prefix is not None:
            preprocess_params["prefix"] = prefix
        if tokenizer_encode_kwargs is not None:
            preprocess_params["tokenizer_encode_kwargs"] = tokenizer_encode_kwargs
        if src_lang is not None:
            preprocess_params["src_lang"] = src_lang
        if tgt_lang is not None:
            preprocess_params["tgt_lang"] = tgt_lang
        if src_lang is None and tgt_lang is None:
            # 4.x backward compatibility: "translation_en_to_fr" means src_lang="en", tgt_lang="fr".
            items = (self.task or "").split("_")
            is_translation_task = len(items) == 4 and items[0] == "translation" and items[2] == "to"
            if is_translation_task and hasattr(self.tokenizer, "_build_translation_inputs"):
                preprocess_params["src_lang"] = items[1]
                preprocess_params["tgt_lang"] = items[3]

        # Everything else is a `generate()` parameter; `Pipeline` puts a call's on top of those given at init.
        forward_params = dict(generate_kwargs or {})
        forward_params.update(kwargs)
        if "assistant_tokenizer" in forward_params:
            # generate() translates between the two tokenizers, so it needs the model's too.
            forward_params.setdefault("tokenizer", self.tokenizer)

        postprocess_params = {}
        if return_tensors is not None:
            postprocess_params["return_tensors"] = bool(return_tensors)
            if return_text is None:
                # 4.x: `return_tensors=True` returns the token ids instead of the text.
                return_text = not return_tensors
        if return_text is not None:
            postprocess_params["return_text"] = bool(return_text)
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        if skip_special_tokens is not None:
            postprocess_params["skip_special_tokens"] = skip_special_tokens
        return preprocess_params, forward_params, postprocess_params

    # ------------------------------------------------------------------ call

    def __call__(self, inputs, **kwargs):
        """
        Translate the text(s) given as inputs.

        Args:
            inputs (`str`, `list[str]`, or a generator / `torch.utils.data.Dataset` of `str`):
                The text(s) to translate.
            batch_size (`int`, *optional*): how many texts go through the model at once (padded with the
                tokenizer's pad token).
            return_tensors (`bool`, *optional*, defaults to `False`):
                Return the generated token ids as `translation_token_ids` (instead of the text unless
                `return_text=True`).
            return_text (`bool`, *optional*, defaults to `True`): return the decoded text as `translation_text`.
            clean_up_tokenization_spaces (`bool`, *optional*): passed to `tokenizer.decode` (the tokenizer's
                setting when not given).
            skip_special_tokens (`bool`, *optional*, defaults to `True`): passed to `tokenizer.decode`.
            truncation (`bool` or `str`, *optional*, defaults to `True`): truncation of over-long inputs.
            prefix (`str`, *optional*): text prepended to every input (defaults to `model.config.prefix`, if any).
            src_lang, tgt_lang (`str`, *optional*): languages, for tokenizers with `_build_translation_inputs`.
            tokenizer_encode_kwargs (`dict`, *optional*): more arguments for the tokenizer call, e.g.
                `{"max_length": 128}` to truncate inputs to 128 tokens.
            generate_kwargs (`dict`, *optional*), and any other keyword argument: passed to `model.generate()`
                (e.g. `max_length`, `max_new_tokens`, `num_beams`, `num_return_sequences`, `do_sample`,
                `length_penalty`, `early_stopping`, `generation_config`).

        Returns:
            For a `str`: `list[dict]`, one dict per returned sequence. For a `list[str]`: `list[dict]` when every input
            has a single result, else `list[list[dict]]`. Each dict has `translation_text` (`str`) and/or
            `translation_token_ids` (`list[int]`).
        """
        if isinstance(inputs, tuple):
            inputs = list(inputs)
        if isinstance(inputs, str):
            return super().__call__(inputs, **kwargs)
        if isinstance(inputs, list):
            for index, item in enumerate(inputs):
                if not isinstance(item, str):
                    raise TypeError(
                        f"{type(self).__name__} expects a str or a list of str, but item {index} of the list is a "
                        f"{type(item).__name__}: {item!r:.80}"
                    )
            if not inputs:
                return []
            result = super().__call__(inputs, **kwargs)
            if all(len(records) == 1 for records in result):
                return [records[0] for records in result]
            return result
        if isinstance(inputs, (types.GeneratorType, Dataset)):
            # Streamed: items are type-checked one by one in `preprocess`.
            return super().__call__(inputs, **kwargs)
        raise TypeError(
            f"{type(self).__name__} expects a str or a list of str (or a generator or torch Dataset of str), "
            f"but got a {type(inputs).__name__}: {inputs!r:.80}"
        )

    # ------------------------------------------------------------------ steps

    def _default_max_input_length(self) -> int | None:
        """The tighter of the tokenizer's `model_max_length` and the model's `max_position_embeddings`: a tokenizer
        trained apart from the model may allow more tokens than the model has positions."""
        limits = []
        max_length = getattr(self.tokenizer, "model_max_length", None)
        if max_length is not None and max_length < _UNSET_MODEL_MAX_LENGTH:
            limits.append(int(max_length))
        max_positions = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(max_positions, int) and max_positions > 0:
            limits.append(max_positions)
        return min(limits) if limits else None

    def _fallback_pad_id(self) -> int:
        for value in (self.tokenizer.pad_token_id, self.model.generation_config.pad_token_id):
            if value is not None:
                return int(value)
        return 0

    def preprocess(
        self,
        text,
        truncation=True,
        prefix=None,
        src_lang=None,
        tgt_lang=None,
        tokenizer_encode_kwargs=None,
    ):
        if not isinstance(text, str):
            raise TypeError(f"{type(self).__name__} expects str inputs, but got a {type(text).__name__}: {text!r:.80}")
        if prefix is None:
            prefix = getattr(self, "prefix", None) or ""

        encode_kwargs = {"truncation": truncation}
        if truncation and truncation != "do_not_truncate":
            max_input_length = self._default_max_input_length()
            if max_input_length is not None:
                encode_kwargs["max_length"] = max_input_length
        encode_kwargs.update(tokenizer_encode_kwargs or {})

        use_languages = (src_lang is not None or tgt_lang is not None) and hasattr(
            self.tokenizer, "_build_translation_inputs"
        )
        if (src_lang is not None or tgt_lang is not None) and not use_languages:
            logger.warning_once(
                f"`src_lang`/`tgt_lang` are ignored: {type(self.tokenizer).__name__} has no `_build_translation_inputs`."
            )

        is_empty = not text.strip()
        forced_bos_token_id = None
        if use_languages:
            encoding = self.tokenizer._build_translation_inputs(
                prefix + text, return_tensors="pt", src_lang=src_lang, tgt_lang=tgt_lang, **encode_kwargs
            )
            forced_bos_token_id = encoding.get("forced_bos_token_id")
        elif not is_empty:
            encoding = self.tokenizer(prefix + text, return_tensors="pt", **encode_kwargs)

        if not is_empty:
            input_ids = encoding["input_ids"]
            attention_mask = encoding.get("attention_mask")
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            # A text that tokenizes to nothing (no special tokens added) is empty too.
            is_empty = input_ids.shape[-1] == 0
        if is_empty:
            # A placeholder, so that the item can be batched; it never reaches the model.
            input_ids = torch.full((1, 1), self._fallback_pad_id(), dtype=torch.long)
            attention_mask = torch.zeros((1, 1), dtype=torch.long)

        model_inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            # 1-dim tensors are concatenated by `pad_collate_fn` and split again when the batch is unrolled.
            "is_empty": torch.tensor([is_empty]),
        }
        if use_languages:
            value = -1 if forced_bos_token_id is None else int(forced_bos_token_id)
            model_inputs["forced_bos_token_id"] = torch.tensor([value], dtype=torch.long)
        return model_inputs

    def _forward(self, model_inputs, **generate_kwargs):
        input_ids = model_inputs["input_ids"]
        attention_mask = model_inputs.get("attention_mask")
        is_empty = model_inputs["is_empty"].reshape(-1).bool()
        in_b = input_ids.shape[0]

        added = {}
        forced_bos = model_inputs.get("forced_bos_token_id")
        if forced_bos is not None and "forced_bos_token_id" not in generate_kwargs:
            values = [int(v) for v in forced_bos.reshape(-1).tolist() if int(v) >= 0]
            if values:
                added["forced_bos_token_id"] = values[0]
        if (
            self._generation_settings(generate_kwargs).get("pad_token_id") is None
            and self.tokenizer.pad_token_id is not None
        ):
            added["pad_token_id"] = self.tokenizer.pad_token_id
        generate_kwargs = self._with_generation_settings(generate_kwargs, added)

        keep = torch.nonzero(~is_empty).reshape(-1)
        if keep.numel() == 0:
            # Nothing to translate in this batch: no `generate()` call at all.
            num_return_sequences = self._generation_settings(generate_kwargs).get("num_return_sequences") or 1
            output_ids = torch.empty((in_b, int(num_return_sequences), 0), dtype=torch.long)
            lengths = torch.zeros((in_b, int(num_return_sequences)), dtype=torch.long)
            return {"output_ids": output_ids, "lengths": lengths, "is_empty": is_empty}

        if keep.numel() < in_b:
            input_ids = input_ids[keep]
            attention_mask = attention_mask[keep] if attention_mask is not None else None
        if attention_mask is not None and in_b > 1:
            # Drop the columns that are padding for every remaining row (e.g. padding that only a longer, empty item
            # needed).
            columns = attention_mask.bool().any(dim=0)
            if not bool(columns.all()):
                input_ids = input_ids[:, columns]
                attention_mask = attention_mask[:, columns]

        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
        sequences = output.sequences if isinstance(output, ModelOutput) else output
        n_kept = keep.numel()
        num_return_sequences = sequences.shape[0] // n_kept
        sequences = sequences.reshape(n_kept, num_return_sequences, *sequences.shape[1:])
        kept_lengths = self._unpadded_lengths(sequences, self._generation_settings(generate_kwargs))
        if n_kept == in_b:
            output_ids, lengths = sequences, kept_lengths
        else:
            output_ids = torch.full(
                (in_b, num_return_sequences, sequences.shape[-1]), self._fallback_pad_id(), dtype=sequences.dtype
            )
            lengths = torch.zeros((in_b, num_return_sequences), dtype=torch.long)
            output_ids[keep.to(output_ids.device)] = sequences
            lengths[keep] = kept_lengths
        return {"output_ids": output_ids, "lengths": lengths, "is_empty": is_empty}

    def _generation_settings(self, generate_kwargs: dict) -> dict:
        """The generation parameters a `generate()` call with `generate_kwargs` sets: the kwargs, on top of their
        `generation_config` if any, on top of the model's generation config."""
        settings = self.model.generation_config.to_diff_dict()
        if (generation_config := generate_kwargs.get("generation_config")) is not None:
            settings.update(generation_config.to_diff_dict())
        return {**settings, **generate_kwargs}

    @staticmethod
    def _with_generation_settings(generate_kwargs: dict, added: dict) -> dict:
        """`generate_kwargs` with `added` on top; inside a copy of the call's `generation_config` if it passes one,
        since `generate()` warns about a generation config passed together with generation parameters."""
        if not added:
            return generate_kwargs
        if (generation_config := generate_kwargs.get("generation_config")) is None:
            return {**generate_kwargs, **added}
        generation_config = copy.deepcopy(generation_config)
        generation_config.update(**added)
        return {**generate_kwargs, "generation_config": generation_config}

    def _unpadded_lengths(self, sequences: torch.Tensor, generation_params: dict) -> torch.Tensor:
        """
        Length of each generated sequence without the padding that batching added: up to and including the first
        EOS after the decoder start token, or else without trailing pad tokens. Uses the EOS and pad ids `generate()`
        used (the call's, else the model's generation config's, else the tokenizer's).
        """
        eos = generation_params.get("eos_token_id")
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if isinstance(eos, torch.Tensor):
            eos = eos.reshape(-1).tolist()
        eos_ids = set(eos) if isinstance(eos, (list, tuple)) else ({eos} if eos is not None else set())
        pad = generation_params.get("pad_token_id")
        if pad is None:
            pad = self._fallback_pad_id()
        rows = sequences.reshape(-1, sequences.shape[-1]).tolist()
        lengths = []
        for ids in rows:
            end = next((position + 1 for position in range(1, len(ids)) if ids[position] in eos_ids), None)
            if end is None:
                end = len(ids)
                while end > 1 and ids[end - 1] == pad:
                    end -= 1
            lengths.append(end)
        return torch.tensor(lengths, dtype=torch.long).reshape(sequences.shape[:2])

    def postprocess(
        self,
        model_outputs,
        return_text=True,
        return_tensors=False,
        clean_up_tokenization_spaces=None,
        skip_special_tokens=True,
    ):
        if not return_text and not return_tensors:
            raise ValueError("`return_text=False` needs `return_tensors=True`, otherwise there is nothing to return.")
        output_ids = model_outputs["output_ids"][0]  # (num_return_sequences, length)
        lengths = model_outputs["lengths"][0].tolist()  # (num_return_sequences,)
        is_empty = bool(model_outputs["is_empty"].reshape(-1)[0])
        records = []
        for sequence, length in zip(output_ids.tolist(), lengths, strict=True):
            ids = [] if is_empty else sequence[:length]
            record = {}
            if return_text:
                record["translation_text"] = (
                    ""
                    if is_empty
                    else self.tokenizer.decode(
                        ids,
                        skip_special_tokens=skip_special_tokens,
                        clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                    )
                )
            if return_tensors:
                record["translation_token_ids"] = ids
            records.append(record)
        return records
