"""Fine-tune a saved model with transformers' Seq2SeqTrainer and the paper's optimiser: Adam (0.9, 0.98, 1e-9) and the
Eq. 3 learning rate, cross-entropy with label smoothing 0.1 (§5.4, applied by the Trainer: the model's own loss is
plain cross-entropy) over all target tokens of an update, length-grouped batches.

    vaswani-finetune MODEL_DIR --train train.jsonl --validation dev.jsonl --output-dir finetuned
    vaswani-finetune MODEL_DIR --train wmt_saved --validation wmt_saved --output-dir finetuned \\
        --src-lang en --tgt-lang de --batch-size 64 --grad-accum 4 --warmup-steps 4000 --eval-steps 1000 \\
        --mixed-precision bf16

--train and --validation take what `vaswani_hf.data.parallel.load_parallel` reads: a folder written by datasets'
save_to_disk (a Dataset, or a DatasetDict whose split --train-split / --validation-split picks) with a `translation`
column, a .jsonl file of {"translation": {"en": ..., "de": ...}} or {"en": ..., "de": ...} rows, a two-column .tsv
file (source, target), or a prefix PREFIX for the line-aligned files PREFIX.en and PREFIX.de.

Writes the final model (safetensors), its tokenizer and generation config to --output-dir, where
AutoModelForSeq2SeqLM.from_pretrained loads it, with checkpoints in checkpoint-* folders below it. With --validation,
evaluation decodes with the model's generation config (the paper's beam search, at most source length + 50 tokens),
and the final BLEU and chrF (sacreBLEU, detokenized) are printed and written to eval_results.json.
"""

import argparse
import json
import sys
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from vaswani_hf.cli.options import warn_renamed

# Importing the package also registers its model with the Auto classes used below.
from vaswani_hf.data.parallel import load_parallel, tokenize_pairs
from vaswani_hf.errors import user_errors
from vaswani_hf.training.corpus import check_tokenizer
from vaswani_hf.training.finetuning import VaswaniSeq2SeqTrainer, finetuning_arguments
from vaswani_hf.training.precision import resolve_mixed_precision


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder of a saved model and its tokenizer")
    parser.add_argument("--output-dir", required=True, help="where the fine-tuned model and checkpoints go")
    data = parser.add_argument_group("data")
    data.add_argument("--train", required=True, metavar="FILE_OR_DIR", help="training pairs (see above)")
    data.add_argument("--train-split", default="train", help="split of a saved DatasetDict (default: train)")
    data.add_argument("--validation", metavar="FILE_OR_DIR", help="validation pairs, scored with BLEU and chrF")
    data.add_argument("--validation-split", default="validation", help="split of a saved DatasetDict")
    data.add_argument("--src-lang", default="en", help="source language key (default: en)")
    data.add_argument("--tgt-lang", default="de", help="target language key (default: de)")
    data.add_argument(
        "--max-length",
        type=int,
        help="drop pairs with more tokens than this on either side, as vaswani-train does (default: "
        "max_position_embeddings minus the generation config's max_length_offset, so that decoding source length + "
        "50 tokens fits the model; no limit for a model without a position table)",
    )
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=float, default=1.0, help="passes over --train (default: 1)")
    training.add_argument("--max-steps", type=int, default=-1, help="stop after this many updates; overrides --epochs")
    training.add_argument("--batch-size", type=int, default=32, help="sentence pairs per device and micro-batch")
    training.add_argument("--grad-accum", type=int, default=1, help="micro-batches per update (default: 1)")
    training.add_argument("--lr-scale", type=float, default=1.0, help="multiplies Eq. 3 (default: 1, the paper)")
    # Named as vaswani-train's run-config settings (train.warmup_steps, train.clip_norm, train.mixed_precision).
    training.add_argument(
        "--warmup-steps", "--warmup", dest="warmup", type=int, default=4000,
        help="Eq. 3 warm-up updates (default: 4000; --warmup is its deprecated spelling)",
    )  # fmt: skip
    training.add_argument(
        "--clip-norm", "--max-grad-norm", dest="max_grad_norm", type=float, default=0.0,
        help="clip gradients to this norm (default: 0, no clipping, as the paper; --max-grad-norm is deprecated)",
    )  # fmt: skip
    training.add_argument("--eval-steps", type=int, help="evaluate every N updates (default: after each epoch)")
    training.add_argument("--save-steps", type=int, help="checkpoint every N updates (default: after each epoch)")
    training.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    precision = training.add_mutually_exclusive_group()
    precision.add_argument(
        "--mixed-precision", choices=("no", "bf16", "fp16", "auto"), default="no",
        help="autocast precision, as vaswani-train's train.mixed_precision: auto is bf16 where the GPU or CPU "
        "multiplies bf16 matrices in hardware, else no (default: no, fp32 as the paper)",
    )  # fmt: skip
    precision.add_argument(
        "--bf16", dest="mixed_precision", action="store_const", const="bf16",
        help="the deprecated spelling of --mixed-precision bf16",
    )  # fmt: skip
    training.add_argument("--report-to", default="none", help="logging integration, e.g. tensorboard (default: none)")
    args = parser.parse_args(argv)
    warn_renamed(
        argv, {"--warmup": "--warmup-steps", "--max-grad-norm": "--clip-norm", "--bf16": "--mixed-precision bf16"}
    )
    for name in ("batch_size", "grad_accum", "warmup", "eval_steps", "save_steps"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            option = {"warmup": "--warmup-steps"}.get(name, f"--{name.replace('_', '-')}")
            parser.error(f"{option} must be a positive number, got {value}")
    if args.eval_steps is not None and args.validation is None:
        parser.error("--eval-steps needs --validation")
    return args


def source_limit(args, model) -> int | None:
    """The --max-length to use: the longest sequence the position table takes, less the room that decoding
    source length + `max_length_offset` tokens needs when a validation set is decoded; a model without a position
    table (a recurrent one) has no limit but --max-length."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions is None:
        return args.max_length
    offset = getattr(model.generation_config, "max_length_offset", None) or 0
    room = positions - offset if args.validation is not None else positions
    if args.max_length is None:
        return room
    if args.max_length > room:
        sys.exit(
            f"error: --max-length {args.max_length} does not fit the model's max_position_embeddings={positions}"
            + (f" with {offset} tokens more for decoding" if room < positions else "")
            + f"; use --max-length {room} or less"
        )
    return args.max_length


def output_clash(model_dir: str, output_dir: str) -> str | None:
    """Why `output_dir` would damage the model fine-tuning starts from, or None. The Trainer writes checkpoints into
    its output folder and saves the fine-tuned model over whatever is there: the starting model would be replaced,
    and pickles added to its folder."""
    model, output = Path(model_dir).resolve(), Path(output_dir).resolve()
    if not model.is_dir():
        return None  # a Hub name: nothing local to overwrite
    if output == model:
        return f"it is the folder of the model being fine-tuned ({model})"
    if output.is_relative_to(model):
        return f"it is inside the folder of the model being fine-tuned ({model})"
    if model.is_relative_to(output):
        return f"it holds the model being fine-tuned ({model})"
    return None


@user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    clash = output_clash(args.model_dir, args.output_dir)
    if clash is not None:
        sys.exit(f"error: --output-dir {args.output_dir}: {clash}; choose a new folder for the fine-tuned model.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
        model = AutoModelForSeq2SeqLM.from_pretrained(args.model_dir)
    except OSError as error:
        if Path(args.model_dir).exists():
            sys.exit(f"error: {args.model_dir}: {error}")
        # transformers' answer for a name it cannot fetch is advice about the internet connection.
        sys.exit(
            f"error: model_dir {args.model_dir!r} is no folder here, and no Hub model of that name could be loaded: "
            "give the folder of a saved model (save_pretrained() writes one); a Hub name needs a network."
        )
    try:
        check_tokenizer(model.config, tokenizer)
    except ValueError as error:
        sys.exit(f"error: {args.model_dir}: {error}")
    max_length = source_limit(args, model)
    precision, why, _ = resolve_mixed_precision(
        args.mixed_precision,
        # The probe's block at the model's width, where the config names it as the paper does.
        d_model=getattr(model.config, "d_model", None) or 512,
        d_ff=getattr(model.config, "d_ff", None) or 2048,
    )
    print(f"mixed precision: {precision} (--mixed-precision {args.mixed_precision}: {why})")

    def prepare(path, split):
        pairs = load_parallel(path, src_lang=args.src_lang, tgt_lang=args.tgt_lang, split=split)
        tokenized, dropped = tokenize_pairs(
            pairs, tokenizer, src_lang=args.src_lang, tgt_lang=args.tgt_lang, max_length=max_length
        )
        if len(tokenized) == 0:
            raise ValueError(
                f"{path}: all {dropped} pairs are longer than {max_length} tokens on a side, so nothing is left to "
                "train or score on; raise --max-length (up to what the model's positions allow) or split long pairs."
            )
        print(
            f"{path}: {len(tokenized)} pairs" + (f" ({dropped} over {max_length} tokens dropped)" if dropped else "")
        )
        return tokenized

    try:
        train_dataset = prepare(args.train, args.train_split)
        eval_dataset = prepare(args.validation, args.validation_split) if args.validation is not None else None
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")

    training_args = finetuning_arguments(
        args.output_dir,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_grad_norm=args.max_grad_norm,
        eval_strategy="no" if eval_dataset is None else ("steps" if args.eval_steps else "epoch"),
        eval_steps=args.eval_steps,
        save_strategy="steps" if args.save_steps else "epoch",
        save_steps=args.save_steps,
        seed=args.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to=args.report_to,
        predict_with_generate=eval_dataset is not None,
    )
    trainer = VaswaniSeq2SeqTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        warmup_steps=args.warmup,
        lr_scale=args.lr_scale,
    )
    trainer.train()
    # The model (with its generation config) and the tokenizer, as from_pretrained loads them.
    trainer.save_model(args.output_dir)

    if eval_dataset is not None:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", metrics)
        print(json.dumps({"bleu": metrics["eval_bleu"], "chrf": metrics["eval_chrf"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
