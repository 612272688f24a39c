"""Tests of `vaswani-finetune` (vaswani_hf.cli.finetune): the command line end to end on a tiny saved model, and its
refusals of settings and tokenizers that do not fit. Offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import WORD_PAIRS_POSITIONS, word_pairs
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from vaswani_hf import VaswaniForConditionalGeneration

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def saved_model(make_word_pairs_model, word_pairs_tokenizer, tmp_path) -> Path:
    """A tiny random model and its tokenizer, saved as a model directory to fine-tune."""
    path = tmp_path / "model"
    make_word_pairs_model().save_pretrained(path)
    word_pairs_tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def as_eos_list(generation_config: dict) -> dict:
    eos = generation_config.get("eos_token_id")
    return {**generation_config, "eos_token_id": eos if isinstance(eos, list) else [eos]}


def test_finetune_script_end_to_end(saved_model, tmp_path):
    rows = word_pairs([2, 5, 3, 8, 4, 6, 7, 3] * 2, seed=1)
    # Both JSON Lines layouts: {"translation": {...}} and flat {"en": ..., "de": ...}.
    train = write_jsonl(tmp_path / "train.jsonl", rows[:8] + [row["translation"] for row in rows[8:]])
    validation = write_jsonl(tmp_path / "dev.jsonl", word_pairs([3, 4, 5], seed=2))
    output_dir = tmp_path / "finetuned"
    command = [
        sys.executable,
        "-m",
        "vaswani_hf.cli.finetune",
        str(saved_model),
        "--train",
        str(train),
        "--validation",
        str(validation),
    ]
    command += ["--output-dir", str(output_dir), "--max-steps", "2", "--batch-size", "4", "--grad-accum", "2"]
    command += ["--warmup-steps", "2", "--eval-steps", "1", "--save-steps", "2", "--seed", "3"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    assert "mixed precision: no (--mixed-precision no: as set)" in done.stdout  # fp32 unless asked
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(printed) == {"bleu", "chrf"}
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["eval_bleu"] == printed["bleu"] and results["eval_chrf"] == printed["chrf"]
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "checkpoint-2").is_dir()

    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir)
    assert isinstance(model, VaswaniForConditionalGeneration)
    initial = VaswaniForConditionalGeneration.from_pretrained(saved_model)
    assert any(not torch.equal(p, initial.state_dict()[n]) for n, p in model.state_dict().items())  # it trained
    # The paper's decoding, without Seq2SeqTrainer's defaults (max_length=20, ...) saved into it. (The Trainer of
    # transformers 5.15 writes the </s> id as a one-element list, which decodes the same.)
    assert as_eos_list(model.generation_config.to_dict()) == as_eos_list(initial.generation_config.to_dict())
    assert AutoTokenizer.from_pretrained(output_dir)("das Haus")["input_ids"][-1] == model.config.eos_token_id


def test_mixed_precision_is_named_as_the_run_config_names_it(capsys):
    """--mixed-precision takes the values of vaswani-train's train.mixed_precision; --bf16, its old spelling, still
    works for one release, with a warning naming the new one."""
    from vaswani_hf.cli import finetune

    argv = ["model", "--train", "t.jsonl", "--output-dir", "out"]
    assert finetune.parse_args(argv).mixed_precision == "no"
    assert finetune.parse_args([*argv, "--mixed-precision", "auto"]).mixed_precision == "auto"
    assert "deprecated" not in capsys.readouterr().err
    assert finetune.parse_args([*argv, "--bf16"]).mixed_precision == "bf16"
    warning = "warning: --bf16 is deprecated and goes in the next release: use --mixed-precision bf16"
    assert warning in capsys.readouterr().err
    with pytest.raises(SystemExit):  # two precisions at once
        finetune.parse_args([*argv, "--bf16", "--mixed-precision", "fp16"])


def test_finetune_script_rejects_a_max_length_that_does_not_fit(saved_model, tmp_path):
    from vaswani_hf.cli import finetune

    train = write_jsonl(tmp_path / "train.jsonl", word_pairs([2, 3]))
    command = [str(saved_model), "--train", str(train), "--output-dir", str(tmp_path / "out")]
    with pytest.raises(
        SystemExit, match=f"--max-length 200 does not fit.*use --max-length {WORD_PAIRS_POSITIONS - 50} or less"
    ):
        finetune.main([*command, "--validation", str(train), "--max-length", "200"])
    with pytest.raises(SystemExit, match="error: .*no corpus at"):
        finetune.main([*command[:2], str(tmp_path / "missing"), *command[3:]])


def test_finetune_names_a_corpus_whose_every_pair_is_too_long(saved_model, tmp_path):
    from vaswani_hf.cli import finetune

    train = write_jsonl(tmp_path / "train.jsonl", word_pairs([12, 15]))
    argv = [str(saved_model), "--train", str(train), "--output-dir", str(tmp_path / "out"), "--max-length", "5"]
    with pytest.raises(SystemExit, match=r"train.jsonl: all 2 pairs are longer than 5 tokens.*raise --max-length"):
        finetune.main(argv)


@pytest.mark.parametrize("where", ["the model folder", "inside it", "its parent"])
def test_finetune_refuses_an_output_folder_that_would_overwrite_its_model(saved_model, tmp_path, where):
    """--output-dir equal to the model folder (or inside it, or holding it) would replace the starting model and add
    pickle checkpoints to it: refused before anything is loaded or written."""
    from vaswani_hf.cli import finetune

    before = {path.name: path.read_bytes() for path in saved_model.iterdir()}
    train = write_jsonl(tmp_path / "train.jsonl", word_pairs([2, 3]))
    output = {"the model folder": saved_model, "inside it": saved_model / "finetuned", "its parent": tmp_path}[where]
    with pytest.raises(SystemExit, match="--output-dir .*model being fine-tuned.*choose a new folder"):
        finetune.main([str(saved_model), "--train", str(train), "--output-dir", str(output)])
    assert {path.name: path.read_bytes() for path in saved_model.iterdir()} == before


def test_finetune_script_refuses_a_foreign_tokenizer(tmp_path, tiny_config):
    """A model directory whose tokenizer has more tokens than the model's vocabulary fails with a clear message."""
    import subprocess
    import sys

    from vaswani_hf import VaswaniForConditionalGeneration, train_shared_bpe

    tokenizer = train_shared_bpe([f"word{i} wort{i}" for i in range(300)] * 2, vocab_size=400)
    assert len(tokenizer) > 64
    VaswaniForConditionalGeneration(tiny_config(vocab_size=64)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    (tmp_path / "train.jsonl").write_text('{"en": "a", "de": "b"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "vaswani_hf.cli.finetune", str(tmp_path / "model"), "--train", str(tmp_path / "train.jsonl"),
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "vocabulary has 64" in done.stderr and "another tokenizer" in done.stderr
