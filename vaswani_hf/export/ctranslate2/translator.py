"""The runtime: a converted folder decoded by CTranslate2, from token ids (`generate_ids`) or text (`translate`), with
options named and counted like `VaswaniForConditionalGeneration.generate`'s."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import ctranslate2
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ...evaluation import check_sentences, encode_sentences
from .converter import EXPORT_INFO_FILE, ExportError


class CTranslate2Translator:
    """A converted folder loaded into a `ctranslate2.Translator`. Token ids map to the strings CTranslate2 reads
    through the folder's own vocabulary; our tokenizer (saved in the folder by the converter, or given) turns text
    into ids and back.

    Args:
        model_dir: a folder written by `VaswaniConverter` / `convert_to_ctranslate2`.
        tokenizer: the model's tokenizer; default: the one saved in `model_dir`, if any (without one, `translate`
            is refused and `generate_ids` works).
        device: "cpu", "cuda" or "auto".
        compute_type: "default" computes in the stored type; "int8", "float16", ... convert on load.
        intra_threads: threads per translation (0: CTranslate2's default, 4 or the number of cores).
        inter_threads: translations run in parallel (each with `intra_threads` threads).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase | str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "default",
        intra_threads: int = 0,
        inter_threads: int = 1,
    ):
        model_dir = Path(model_dir)
        if not (model_dir / "model.bin").is_file():
            raise ExportError(
                f"{str(model_dir)!r} holds no CTranslate2 model (model.bin): convert one first with "
                "vaswani-export-ct2 MODEL_DIR --output-dir OUTPUT_DIR."
            )
        self.translator = ctranslate2.Translator(
            os.fspath(model_dir),
            device=device,
            compute_type=compute_type,
            intra_threads=intra_threads,
            inter_threads=inter_threads,
        )
        # One vocabulary for source and target, as the converter registers it.
        self.tokens: list[str] = json.loads((model_dir / "shared_vocabulary.json").read_text(encoding="utf-8"))
        self.token_ids = {token: index for index, token in enumerate(self.tokens)}
        # The token CTranslate2 stops at, as the converter wrote it.
        self.eos_token_id = self.token_ids[
            json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["eos_token"]
        ]
        info_file = model_dir / EXPORT_INFO_FILE
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
        self.max_positions: int | None = info.get("max_position_embeddings")
        if tokenizer is None and (model_dir / "tokenizer_config.json").is_file():
            tokenizer = model_dir
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.tokenizer: PreTrainedTokenizerBase | None = tokenizer

    def generate_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        *,
        num_beams: int = 1,
        length_penalty: float = 0.0,
        max_new_tokens: int | None = None,
        min_new_tokens: int = 0,
        max_length_offset: int | None = 50,
        fixed_length: int | None = None,
        include_end_token: bool = False,
        max_batch_size: int = 0,
        batch_type: str = "examples",
    ) -> list[list[int]]:
        """Translates sources given as token ids, as our tokenizer makes them (ending with </s>, unpadded), and
        returns the generated ids of each: without the decoder start token <s>, and without the final </s> unless
        `include_end_token`.

        Output lengths, compared with `VaswaniForConditionalGeneration.generate`:

        - Every count is of generated tokens, the final </s> included when it is generated, <s> never. Our
          `max_new_tokens` / `min_new_tokens` and CTranslate2's `max_decoding_length` / `min_decoding_length` count
          the same way, so they are passed through unchanged; only the defaults differ (CTranslate2's minimum is 1,
          ours 0, so `min_new_tokens=0` is passed explicitly and a translation may end at once in both).
        - `max_new_tokens=N`: at most N tokens. A sentence that has not produced </s> after N tokens stops there,
          without </s>, in both.
        - `min_new_tokens=M`: </s> is forbidden for the first M tokens, so a translation has at least M tokens before
          its </s>.
        - `fixed_length=N`, for speed measurements: exactly N tokens for every sentence, none of them </s>, in N
          decoder steps, as `generate(min_new_tokens=N, max_new_tokens=N)`. The end token does not count: it can
          never be produced.
        - Neither `max_new_tokens` nor `fixed_length`: `generate()`'s default per-sentence limit (§6.1), source
          length (with its </s>) + `max_length_offset`, capped at the model's max_position_embeddings, where
          `generate()` forces </s> as the last token. CTranslate2 has one limit per call and cannot force a token, so
          sentences are decoded in groups of equal limit, with a limit one token lower, and </s> is added back to a
          translation that reaches it (with `include_end_token`). Greedy outputs are then `generate()`'s, with one
          decoder step fewer for sentences that reach the limit. In beam search, hypotheses that reach the limit are
          scored without the forced </s> (its log-probability and its length), so results can differ for sentences
          whose best hypotheses are that long; `max_new_tokens` avoids this.

        `num_beams > 1` is beam search. CTranslate2 divides a finished hypothesis' log-probability by
        `length ** length_penalty`, the length counting </s>: our `length_penalty_type="power"`, not the paper's GNMT
        penalty `((5 + length) / 6) ** alpha` that `generate()` applies by default, which CTranslate2 does not have.
        With `length_penalty=0` CTranslate2 stops a sentence once its best hypothesis has ended, and finds what
        `generate(length_penalty=0, early_stopping=False)` finds; with any other value it stops once `num_beams`
        hypotheses have ended, as `generate(length_penalty_type="power", early_stopping=True)`. Greedy search
        (`num_beams=1`) ignores `length_penalty`.

        CTranslate2 returns nothing for a source made of </s> alone (an empty sentence), where `generate()` still
        decodes; `translate` never sends blank sentences. Sources longer than the model's positions are an error in
        both (CTranslate2: "No position encodings are defined for positions >= ...").

        `max_batch_size` / `batch_type` ("examples" or "tokens") are CTranslate2's: it sorts the sources by length
        and decodes `max_batch_size` at a time (0: all at once).

        Raises:
            ValueError: if `fixed_length` is combined with `max_new_tokens` or `min_new_tokens`, or no limit is set.
        """
        sources = [[self.tokens[index] for index in ids] for ids in input_ids]
        options = dict(
            beam_size=num_beams,
            length_penalty=length_penalty,
            # Sources go in whole: CTranslate2 would otherwise cut them at 1024 tokens, dropping their </s>.
            max_input_length=0,
            return_end_token=include_end_token,
            max_batch_size=max_batch_size,
            batch_type=batch_type,
        )
        if fixed_length is not None:
            if max_new_tokens is not None or min_new_tokens:
                raise ValueError("fixed_length sets both limits: do not pass max_new_tokens or min_new_tokens with it")
            min_new_tokens = max_new_tokens = fixed_length
        if max_new_tokens is not None:
            limits = [max_new_tokens] * len(sources)
        elif max_length_offset is not None:
            limits = [len(source) + max_length_offset for source in sources]
            if self.max_positions is not None:
                limits = [min(limit, self.max_positions) for limit in limits]
            # One token fewer: generate() forces </s> as the limit-th token (added back below).
            limits = [limit - 1 for limit in limits]
        else:
            raise ValueError("Set an output limit: max_new_tokens, fixed_length or max_length_offset.")

        outputs: list[list[int]] = [[] for _ in sources]
        for limit in sorted(set(limits)):
            group = [index for index, value in enumerate(limits) if value == limit]
            if limit > 0:
                results = self.translator.translate_batch(
                    [sources[index] for index in group],
                    min_decoding_length=min_new_tokens,
                    max_decoding_length=limit,
                    **options,
                )
                for index, result in zip(group, results, strict=True):
                    outputs[index] = [self.token_ids[token] for token in result.hypotheses[0]]
        if include_end_token and max_new_tokens is None:
            for output in outputs:
                if not output or output[-1] != self.eos_token_id:
                    output.append(self.eos_token_id)
        return outputs

    def translate(self, texts: Sequence[str], **options) -> list[str]:
        """Translates sentences: our tokenizer encodes them (sources longer than the model's positions truncated,
        keeping their </s>), `generate_ids(**options)` decodes, and the tokenizer decodes the output without special
        tokens. A blank sentence gives "" without decoding, as `vaswani_hf.evaluation.translate` does.

        Raises:
            TypeError: if `texts` is a single str or holds something other than str.
            ExportError: if there is no tokenizer (a model converted without one decodes from ids only).
        """
        if self.tokenizer is None:
            raise ExportError(
                "This CTranslate2 model has no tokenizer, so it cannot read text: pass tokenizer=... or decode token "
                "ids with generate_ids()."
            )
        texts = check_sentences("texts", texts)
        translations = [""] * len(texts)
        todo = [index for index, text in enumerate(texts) if text.strip()]
        if not todo:
            return translations
        input_ids = encode_sentences([texts[index] for index in todo], self.tokenizer, self.max_positions)
        outputs = self.generate_ids(input_ids, **options)
        for index, text in zip(todo, self.tokenizer.batch_decode(outputs, skip_special_tokens=True), strict=True):
            translations[index] = text
        return translations
