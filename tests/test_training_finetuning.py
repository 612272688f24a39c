"""Tests for vaswani_hf.training.finetuning: Seq2SeqTrainer with the paper's Adam and Eq. 3, exact gradient
accumulation, BLEU/chrF from predict_with_generate. Offline, tiny models. (`vaswani-finetune`, the command line on top
of it: test_cli_finetune.py.)"""

import pytest
import sacrebleu
import torch
from conftest import word_pairs
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, EvalPrediction, TrainerCallback

from vaswani_hf.data.parallel import tokenize_pairs
from vaswani_hf.training.finetuning import (
    VaswaniSeq2SeqTrainer,
    finetuning_arguments,
    translation_metrics,
)


def tokenized(rows: list[dict], tokenizer) -> Dataset:
    return tokenize_pairs(Dataset.from_list(rows), tokenizer, src_lang="en", tgt_lang="de")[0]


pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(TrainerCallback):
    """Records, before each optimizer step, the gradients and the learning rate that the step is about to use."""

    def __init__(self):
        self.grads, self.lrs = None, []

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        self.lrs.append(optimizer.param_groups[0]["lr"])


def make_trainer(model, tokenizer, tmp_path, train_dataset=None, eval_dataset=None, callbacks=(), **kwargs):
    """A VaswaniSeq2SeqTrainer on the CPU that saves nothing; `kwargs` go to the trainer or to its arguments."""
    trainer_keys = {"warmup_steps", "lr_scale", "data_collator", "compute_metrics"}
    args = finetuning_arguments(
        tmp_path / "run",
        use_cpu=True,
        save_strategy="no",
        seed=0,
        **{k: v for k, v in kwargs.items() if k not in trainer_keys},
    )
    return VaswaniSeq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        **{k: v for k, v in kwargs.items() if k in trainer_keys},
    )


# ---------------------------------------------------------------------------------------------------------------------
# Gradient accumulation is one large batch: the loss is normalised over the target tokens of the whole update
# ---------------------------------------------------------------------------------------------------------------------
def key_bias(name: str, d_model: int) -> slice | None:
    """The key part of an attention projection's bias, whose gradient is zero: it adds the same amount to every score
    of a query, which softmax ignores. Float rounding leaves ~1e-9 there, and Adam's first step, lr * g / (|g| + 1e-9),
    turns that into steps of arbitrary size and sign, different for any two summation orders."""
    if name.endswith("self_attn.qkv_proj.bias"):  # [W^Q; W^K; W^V] biases
        return slice(d_model, 2 * d_model)
    if name.endswith("encoder_attn.kv_proj.bias"):  # [W^K; W^V] biases
        return slice(0, d_model)
    return None


def one_update(make_model, tokenizer, tmp_path, dataset, batch_size, accumulation, per_micro_batch_mean=False):
    """One Adam update (Eq. 3 at n = 1 with warm-up 1, so lr = d_model^-0.5 = 0.25) through the trainer. Returns the
    gradients it used, the parameters after it, and the number of target tokens in each micro-batch."""
    recorder, counts = Recorder(), []
    model = make_model()
    # With label smoothing the Trainer takes the labels away: the collator builds the decoder inputs from them.
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)

    def counting(features):
        batch = collate(features)
        counts.append(int((batch["labels"] != -100).sum()))
        return batch

    trainer = make_trainer(
        model,
        tokenizer,
        tmp_path,
        train_dataset=dataset,
        callbacks=[recorder],
        data_collator=counting,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        warmup_steps=1,
    )
    if per_micro_batch_mean:
        # The accumulation bug this trainer avoids: each micro-batch averaged over its own tokens (the model's loss
        # without num_items_in_batch), and the Trainer dividing by the number of micro-batches.
        trainer.model_accepts_loss_kwargs = False
    trainer.train()
    assert recorder.lrs == [pytest.approx(0.25)]
    return recorder.grads, {name: p.detach().clone() for name, p in model.named_parameters()}, counts


def test_accumulated_update_equals_one_large_batch(make_word_pairs_model, word_pairs_tokenizer, tmp_path):
    # Targets of 1 to 15 words: length grouping puts the long ones in one micro-batch and the short in the other.
    dataset = tokenized(word_pairs([1, 3, 5, 7, 9, 11, 13, 15]), word_pairs_tokenizer)
    full_grads, full, full_counts = one_update(make_word_pairs_model, word_pairs_tokenizer, tmp_path, dataset, 8, 1)
    grads, accumulated, counts = one_update(make_word_pairs_model, word_pairs_tokenizer, tmp_path, dataset, 4, 2)
    _, averaged, _ = one_update(
        make_word_pairs_model, word_pairs_tokenizer, tmp_path, dataset, 4, 2, per_micro_batch_mean=True
    )

    assert len(counts) == 2 and counts[0] != counts[1] and sum(counts) == full_counts[0]
    initial = dict(make_word_pairs_model().named_parameters())
    d_model = make_word_pairs_model().config.d_model
    for name, param in full.items():
        torch.testing.assert_close(grads[name], full_grads[name], atol=1e-6, rtol=1e-5, msg=name)
        masked = key_bias(name, d_model)
        for after in (param, accumulated[name], averaged[name]):
            if masked is not None:
                after[masked] = initial[name][masked].detach()
        assert not torch.equal(param, initial[name]), name  # every tensor took a step
        torch.testing.assert_close(accumulated[name], param, atol=1e-5, rtol=0, msg=name)
    # Averaging per micro-batch weighs the short targets' tokens more: the gradient turns, and Adam's first step
    # (the sign of the gradient, times lr) flips entries by 2 * lr.
    flipped = max(float((averaged[name] - full[name]).abs().max()) for name in full)
    assert flipped == pytest.approx(0.5, abs=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# The learning rate is Eq. 3 of the update number, counted from 1
# ---------------------------------------------------------------------------------------------------------------------
def test_learning_rate_follows_eq3_from_the_first_update(make_word_pairs_model, word_pairs_tokenizer, tmp_path):
    dataset = tokenized(word_pairs([2, 3, 4, 5]), word_pairs_tokenizer)
    recorder = Recorder()
    trainer = make_trainer(
        make_word_pairs_model(),
        word_pairs_tokenizer,
        tmp_path,
        train_dataset=dataset,
        callbacks=[recorder],
        per_device_train_batch_size=2,
        max_steps=6,
        warmup_steps=3,
        lr_scale=2.0,
    )
    trainer.train()
    d_model = trainer.model.config.d_model
    eq3 = [2.0 * d_model**-0.5 * min(n**-0.5, n * 3**-1.5) for n in range(1, 7)]
    assert recorder.lrs == pytest.approx(eq3, rel=1e-6)
    assert recorder.lrs[0] > 0  # n = 1, not transformers' inverse_sqrt, which starts one update behind
    assert max(range(6), key=recorder.lrs.__getitem__) == 2  # the peak is update n = warmup_steps
    adam = trainer.optimizer.optimizer  # inside accelerate's wrapper
    assert (
        isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.9, 0.98) and adam.defaults["eps"] == 1e-9
    )


def test_trainer_rejects_bad_settings(make_word_pairs_model, word_pairs_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="warmup_steps must be a positive int"):
        make_trainer(make_word_pairs_model(), word_pairs_tokenizer, tmp_path, warmup_steps=0)
    with pytest.raises(ValueError, match="lr_scale must be positive"):
        make_trainer(make_word_pairs_model(), word_pairs_tokenizer, tmp_path, lr_scale=0.0)
    args = finetuning_arguments(tmp_path / "run", use_cpu=True)
    with pytest.raises(ValueError, match="processing_class"):
        VaswaniSeq2SeqTrainer(model=make_word_pairs_model(), args=args)


# ---------------------------------------------------------------------------------------------------------------------
# predict_with_generate: the paper's decoding, not Seq2SeqTrainer's 20 tokens, and sacreBLEU scores
# ---------------------------------------------------------------------------------------------------------------------
def test_translation_metrics_score_detokenized_text(word_pairs_tokenizer):
    rows = word_pairs([3, 6, 4], seed=3)
    references = [row["translation"]["de"] for row in rows]
    labels = word_pairs_tokenizer(text_target=references, padding=True)["input_ids"]
    labels = [[-100 if t == word_pairs_tokenizer.pad_token_id else t for t in row] for row in labels]
    start = [word_pairs_tokenizer.bos_token_id]  # the decoder start token heads every generated row
    perfect = [start + [t if t != -100 else word_pairs_tokenizer.pad_token_id for t in row] for row in labels]
    metrics = translation_metrics(word_pairs_tokenizer)
    scores = metrics(EvalPrediction(predictions=torch.tensor(perfect).numpy(), label_ids=torch.tensor(labels).numpy()))
    assert scores["bleu"] == pytest.approx(100.0) and scores["chrf"] == pytest.approx(100.0)
    assert scores["gen_len"] == pytest.approx(
        sum(len(word_pairs_tokenizer(text_target=r)["input_ids"]) for r in references) / 3
    )
    # One sentence wrong: sacreBLEU's own numbers on the decoded strings.
    wrong = word_pairs_tokenizer(text_target=["das Haus", references[1], references[2]], padding=True)["input_ids"]
    wrong = [start + row + [word_pairs_tokenizer.pad_token_id] * 30 for row in wrong]
    scores = metrics(EvalPrediction(predictions=torch.tensor(wrong).numpy(), label_ids=torch.tensor(labels).numpy()))
    hypotheses = ["das Haus", references[1], references[2]]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hypotheses, [references]).score)


def test_predict_with_generate_decodes_source_length_plus_50_not_20(
    make_word_pairs_model, word_pairs_tokenizer, tmp_path
):
    model = make_word_pairs_model(seed=1)
    eos = word_pairs_tokenizer.eos_token_id

    def lower_eos(module, args, logits):
        # Finite, so that the source-length limit can still force </s>: every output runs to that limit.
        return logits - 100.0 * torch.nn.functional.one_hot(torch.tensor(eos), logits.shape[-1]).to(logits)

    model.lm_head.register_forward_hook(lower_eos)
    dataset = tokenized(word_pairs([24, 30, 27], seed=5), word_pairs_tokenizer)
    source_lengths = [len(ids) for ids in dataset["input_ids"]]
    assert min(source_lengths) > 20
    before = model.generation_config.to_dict()
    trainer = make_trainer(model, word_pairs_tokenizer, tmp_path, eval_dataset=dataset, per_device_eval_batch_size=2)
    assert trainer.args.generation_max_length is None

    output = trainer.predict(dataset)
    # Length grouping reorders the sentences: match them by their references.
    by_labels = {tuple(row["labels"]): len(row["input_ids"]) for row in dataset}
    for prediction, labels in zip(output.predictions, output.label_ids, strict=True):
        limit = by_labels[tuple(int(t) for t in labels if t != -100 and t != word_pairs_tokenizer.pad_token_id)] + 50
        # Column 0 is the decoder start token; </s> is forced as the 50th token past the source length.
        assert prediction.tolist().index(eos) == limit
    metrics = output.metrics
    assert metrics["test_gen_len"] == pytest.approx(sum(source_lengths) / 3 + 50)
    assert 0 <= metrics["test_bleu"] <= 100 and 0 <= metrics["test_chrf"] <= 100
    # Seq2SeqTrainer writes transformers' defaults (max_length=20, ...) into the generation config; they are undone.
    assert model.generation_config.to_dict() == before
    assert set(trainer.evaluate()) >= {"eval_loss", "eval_bleu", "eval_chrf", "eval_gen_len"}
