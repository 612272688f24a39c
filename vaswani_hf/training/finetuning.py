"""Fine-tuning with transformers' `Seq2SeqTrainer` under the paper's recipe (§5): Adam with beta2 0.98 and eps 1e-9,
the Eq. 3 learning rate, label-smoothed cross-entropy (§5.4) normalised over every target token of an update, batches
grouped by length, and BLEU/chrF (`vaswani_hf.evaluation.score`, sacreBLEU) on the paper's beam search.

`vaswani-finetune` is the command line around this module.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerBase, Seq2SeqTrainer, Seq2SeqTrainingArguments

from ..evaluation import score
from .optim import noam_schedule, paper_adam

__all__ = [
    "VaswaniSeq2SeqTrainer",
    "finetuning_arguments",
    "translation_metrics",
]


# ---------------------------------------------------------------------------------------------------------------------
# Metrics: sacreBLEU on detokenized text, through the package's one scorer
# ---------------------------------------------------------------------------------------------------------------------
def translation_metrics(tokenizer: PreTrainedTokenizerBase):
    """`compute_metrics` for `predict_with_generate`: corpus BLEU and chrF from sacreBLEU on detokenized text, and
    `gen_len`, the mean number of generated tokens (</s> included, the decoder start token not).

    The references are the labels decoded, which is the target text as the tokenizer normalises it (NFKC, characters
    outside the vocabulary dropped); the Trainer's length-grouped evaluation order leaves no way to
    pair a prediction with its raw reference. Score test sets from the raw text instead.
    """
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id

    def generated_lengths(predictions: np.ndarray) -> np.ndarray:
        # Column 0 is the decoder start token, so the first </s> sits at the number of tokens generated with it. A row
        # without </s> stopped at an explicit limit: its non-pad tokens after the start token.
        ends = predictions[:, 1:] == eos
        return np.where(ends.any(axis=1), ends.argmax(axis=1) + 1, np.count_nonzero(predictions != pad, axis=1) - 1)

    def compute(prediction) -> dict[str, float]:
        predictions = (
            prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        )
        # The Trainer pads predictions and labels of different batches to one width with -100.
        predictions = np.where(predictions < 0, pad, predictions)
        labels = np.where(prediction.label_ids < 0, pad, prediction.label_ids)
        hypotheses = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        references = tokenizer.batch_decode(labels, skip_special_tokens=True)
        scores = score(hypotheses, references)
        return {
            "bleu": scores["bleu"],
            "chrf": scores["chrf"],
            "gen_len": float(np.mean(generated_lengths(predictions))),
        }

    return compute


# ---------------------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------------------
def finetuning_arguments(output_dir: str | Path, **overrides) -> Seq2SeqTrainingArguments:
    """`Seq2SeqTrainingArguments` with this recipe's defaults; `overrides` are any other arguments, or replace these.

    - `train_sampling_strategy="group_by_length"`: batches of similar source lengths waste little on padding
      (transformers 5's name for `group_by_length=True`).
    - `max_grad_norm=0.0`: the paper does not clip gradients.
    - `predict_with_generate=True` with `generation_max_length` and `generation_num_beams` unset: evaluation decodes
      with the model's generation config, the paper's beam 4 and input length + 50 (a `generation_max_length` would
      replace that limit for every sentence).
    - `report_to="none"`: no logging integration unless asked for.
    - `label_smoothing_factor=0.1`: the paper's epsilon_ls (§5.4). The model's own loss is plain cross-entropy; the
      Trainer smooths the logits and, from transformers 5.15 on, divides by the target tokens of the whole update
      (`num_items_in_batch`), so gradient accumulation stays exact.
    """
    defaults = dict(
        label_smoothing_factor=0.1,
        train_sampling_strategy="group_by_length",
        max_grad_norm=0.0,
        predict_with_generate=True,
        report_to="none",
    )
    return Seq2SeqTrainingArguments(output_dir=str(output_dir), **{**defaults, **overrides})


class VaswaniSeq2SeqTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` with the paper's optimiser (§5.3): Adam (0.9, 0.98, 1e-9) and the Eq. 3 learning rate
    `lr_scale * d_model^-0.5 * min(n^-0.5, n * warmup_steps^-1.5)`, whose first update uses n = 1 (transformers'
    `inverse_sqrt` schedule is one update behind Eq. 3).

    These replace `args.optim`, `args.learning_rate`, `args.lr_scheduler_type` and the warm-up arguments, which are
    ignored; `args.weight_decay` still applies, as Adam's L2 term (0 by default, as in the paper). `d_model` is the
    config's `hidden_size` (for this package's models and Marian, `d_model` itself). Build `args` with `finetuning_arguments` for the rest of the recipe.

    All arguments are keywords. Defaults that differ from `Seq2SeqTrainer`: without a `data_collator`,
    `DataCollatorForSeq2Seq` pads the inputs with the tokenizer's <pad> and the labels with -100; without
    `compute_metrics`, `predict_with_generate` reports BLEU and chrF (`translation_metrics`). Both need the tokenizer
    as `processing_class`.

    The loss is `args.label_smoothing_factor` (0.1 from `finetuning_arguments`, §5.4) applied by the Trainer to the
    model's logits, divided by the number of target tokens in the whole update (the `num_items_in_batch` the Trainer
    passes), so gradient accumulation and data parallelism give the gradient of one large batch. Without smoothing
    it is the model's own cross-entropy, normalised the same way.
    """

    def __init__(
        self,
        *,
        warmup_steps: int = 4000,
        lr_scale: float = 1.0,
        data_collator=None,
        compute_metrics=None,
        **kwargs,
    ):
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps <= 0:
            raise ValueError(f"warmup_steps must be a positive int (the paper uses 4000), got {warmup_steps!r}.")
        if not lr_scale > 0:
            raise ValueError(f"lr_scale must be positive (1.0 is the paper's Eq. 3), got {lr_scale!r}.")
        tokenizer = kwargs.get("processing_class")
        if data_collator is None:
            if tokenizer is None:
                raise ValueError("Pass the tokenizer as processing_class, or a data_collator that pads the labels.")
            # With label smoothing the Trainer takes the labels away before calling the model: the collator builds
            # the decoder inputs from them (the model's `prepare_decoder_input_ids_from_labels`).
            data_collator = DataCollatorForSeq2Seq(tokenizer, model=kwargs.get("model"), label_pad_token_id=-100)
        super().__init__(data_collator=data_collator, compute_metrics=compute_metrics, **kwargs)
        if compute_metrics is None and self.args.predict_with_generate and tokenizer is not None:
            self.compute_metrics = translation_metrics(tokenizer)
        self.warmup_steps = warmup_steps
        self.lr_scale = lr_scale

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """`paper_adam` over the trainable parameters, with `lr_scale` as the base learning rate."""
        if self.optimizer is None:
            model = self.model if model is None else model
            params = [p for p in model.parameters() if p.requires_grad]
            self.optimizer = paper_adam(params, self.lr_scale, weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """Eq. 3 from `noam_schedule`: the Trainer steps it once per update, so update n trains at Eq. 3 of n."""
        if self.lr_scheduler is None:
            optimizer = self.optimizer if optimizer is None else optimizer
            self.lr_scheduler = noam_schedule(optimizer, self.model.config.hidden_size, self.warmup_steps)
        return self.lr_scheduler

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """`Seq2SeqTrainer.prediction_step` that leaves the model's generation config as it found it.

        After generating, `Seq2SeqTrainer` writes transformers' defaults into every unset field of
        `model.generation_config`, `max_length=20` among them: the next `generate` then warns that both `max_length`
        and the input + 50 `max_new_tokens` are set, and checkpoints would save the defaults as the model's own.
        """
        generation_config = copy.deepcopy(self.model.generation_config)
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)
        finally:
            self.model.generation_config = generation_config
