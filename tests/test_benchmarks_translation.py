"""`vaswani_hf.benchmarks.translation` (scripts/benchmark_translation.py) on the trained toy model: each engine
translates the test set in its own process, and the engines that run the same search in fp32 (ours with |Y| ** alpha,
the converted Marian, CTranslate2) give the same translations. (The speed itself is the benchmark's business, not
the tests'.)"""

import json

import pytest
import torch

from vaswani_hf.benchmarks import translation as benchmark_translation

from toy_task import as_text, toy_examples, word_tokenizer

pytest.importorskip("ctranslate2")


def test_the_same_search_gives_the_same_translations_in_every_engine(trained_toy_model, tmp_path):
    model_dir = tmp_path / "model"
    trained_toy_model.save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    sources, targets = toy_examples([3, 8, 5, 6, 4, 7, 3, 5] * 3, torch.Generator().manual_seed(5))
    test = tmp_path / "test.jsonl"
    test.write_text(
        "".join(json.dumps({"en": as_text(s), "de": as_text(t)}) + "\n" for s, t in zip(sources, targets, strict=True))
    )
    runs = ["vaswani_hf:fp32:power", "marian:fp32", "ctranslate2:fp32", "vaswani_hf:fp32:gnmt", "ctranslate2:int8",
            "vaswani_hf:fp32:power@24", "ctranslate2:fp32@24"]  # fmt: skip
    output, table = tmp_path / "bench.json", tmp_path / "bench.md"
    benchmark_translation.main([str(model_dir), "--test", str(test), "--runs", *runs, "--output", str(output),
                                "--markdown", str(table)])  # fmt: skip

    rows = {row["run"]: row for row in json.loads(output.read_text())["rows"]}
    assert list(rows) == runs
    # Smaller batches change the memory, not the translations: ours of one sentence each (24 tokens is below every
    # sentence's output limit), CTranslate2's of at most 24 source tokens.
    for run in ("marian:fp32", "ctranslate2:fp32", "vaswani_hf:fp32:power@24", "ctranslate2:fp32@24"):
        assert rows[run]["identical_to_reference"] == len(sources), run
        assert rows[run]["bleu"] == rows["vaswani_hf:fp32:power"]["bleu"]
    # The toy model has learnt its task: the translations are right, not merely equal.
    assert rows["vaswani_hf:fp32:gnmt"]["bleu"] > 90
    for row in rows.values():
        assert row["seconds"] > 0 and row["target_tokens_per_s"] > 0 and row["sentences"] == len(sources)
    lines = table.read_text().splitlines()
    assert sum(line.startswith("| ") for line in lines) == len(runs) + 1
    # Where the time goes: the padding of each batching, as shares.
    shares = json.loads(output.read_text())["batching"]
    record = json.loads(output.read_text())["provenance"]
    assert record["command"].endswith(str(table)) and record["commit"] is not None
    assert {"transformers", "torch", "accelerate"} <= set(record["versions"]) and record["cpu"]["model"]
    assert set(shares) == {"vaswani_hf", "marian"} and sum("batching:" in line for line in lines) == 2
    for share in shares.values():
        assert 0 <= share["source_padding_share"] < 1 and 0 <= share["decoder_padding_share"] < 1


@pytest.mark.parametrize(
    "spec",
    ["marian:int8", "ctranslate2:bf16", "ctranslate2:fp32:gnmt", "onnx:fp32", "marian:fp32@256", "vaswani_hf:fp32@0",
     "vaswani_hf:fp32@many", "vaswani_hf:fp32@-5"],
)  # fmt: skip
def test_a_run_no_engine_has_is_refused(spec):
    with pytest.raises(ValueError, match="run"):
        benchmark_translation.parse_run(spec)


def test_a_run_names_its_token_budget_after_an_at_sign():
    assert benchmark_translation.parse_run("vaswani_hf:bf16:power@512") == ("vaswani_hf", "bf16", "power", 512)
    assert benchmark_translation.parse_run("ctranslate2:int8@64") == ("ctranslate2", "int8", "power", 64)
    assert benchmark_translation.parse_run("vaswani_hf:fp32") == ("vaswani_hf", "fp32", "gnmt", None)
