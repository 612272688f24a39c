"""What a user waits for: a real test set translated with the paper's beam search, by each engine, end to end.

    python scripts/benchmark_translation.py outputs/main-job-postnorm/model \
        --output docs/benchmarks/translation-cpu.json --markdown docs/benchmarks/translation-cpu.md

Translates the built-in corpus's help test split (1,843 sentences; `--test` for another parallel file) with one saved
post-norm model, in a fresh process per run, and reports seconds, sentences/s, target tokens/s (the hypotheses'
tokens with their </s>, counted by the model's tokenizer for every engine alike), the peak memory the translation
adds (Linux VmHWM, as scripts/benchmark.py measures it), BLEU and chrF. A run is ENGINE:DTYPE[:PENALTY][@MAX_TOKENS]:

- `vaswani_hf`: `vaswani_hf.evaluation.translate`, as a user of this package calls it: length-sorted batches of at
  most `evaluation.DEFAULT_MAX_TOKENS` tokens, each sentence counted at its output limit, the model's generation
  config (beam 4, alpha 0.6, early stopping, at most source length + 50 tokens). PENALTY `gnmt` is the paper's
  ((5 + |Y|) / 6) ** alpha; `power` is |Y| ** alpha, the only form Marian's and CTranslate2's beam searches have, for
  the runs that must do the same work as theirs.
- `marian`: the same weights converted into transformers' `MarianMTModel` (`vaswani_hf.export.marian`), decoded the
  way a transformers user does: `generate()` over batches of 32 sentences in file order, padded, with beam 4,
  `length_penalty=0.6`, early stopping and `max_new_tokens` = the batch's longest source + 50.
- `ctranslate2`: the model exported with `vaswani_hf.export.ctranslate2` and decoded by CTranslate2 through its
  translator (same beam, penalty |Y| ** alpha, limit and batches of 4096 source tokens); DTYPE fp32 or int8 (weights
  quantized on load, computing in int8 where CTranslate2 can).

`@MAX_TOKENS` after a vaswani_hf or ctranslate2 run sets its batches' size (`--max-tokens`; for CTranslate2, source
tokens): `vaswani_hf:fp32:gnmt@2048`. The peak memory of decoding grows with it.

Runs with the same search in fp32 (vaswani_hf:fp32:power, marian:fp32, ctranslate2:fp32) should give the same BLEU:
the proof that they did the same work; the report counts the hypotheses identical to vaswani_hf:fp32:power's.
Run it alone on the machine: the figures are times.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..evaluation import DEFAULT_MAX_TOKENS, decoding_lengths
from ..files import write_atomic
from ..provenance import provenance

DEFAULT_RUNS = (
    "vaswani_hf:fp32:gnmt",
    "vaswani_hf:fp32:power",
    "marian:fp32",
    "ctranslate2:fp32",
    "ctranslate2:int8",
    "vaswani_hf:bf16:gnmt",
    "vaswani_hf:bf16:power",
    "marian:bf16",
)
REFERENCE_RUN = "vaswani_hf:fp32:power"
MARIAN_BATCH = 32
# CTranslate2's batch_type="tokens" counts source tokens only.
CTRANSLATE2_MAX_TOKENS = 4096
BEAM = dict(num_beams=4, length_penalty=0.6)


def parse_run(spec: str) -> tuple[str, str, str, int | None]:
    """ENGINE:DTYPE[:PENALTY][@MAX_TOKENS] as (engine, dtype, penalty, max_tokens); max_tokens None: the default."""
    search, _, budget = spec.partition("@")
    parts = search.split(":")
    engine, dtype = parts[0], parts[1] if len(parts) > 1 else "fp32"
    penalty = parts[2] if len(parts) > 2 else ("gnmt" if engine == "vaswani_hf" else "power")
    allowed = {
        "vaswani_hf": ("fp32", "bf16", "fp16"),
        "marian": ("fp32", "bf16", "fp16"),
        "ctranslate2": ("fp32", "int8"),
    }
    if engine not in allowed or dtype not in allowed[engine] or penalty not in ("gnmt", "power"):
        raise ValueError(f"run {spec!r}: expected ENGINE:DTYPE[:PENALTY] with ENGINE:DTYPE among {allowed}")
    if engine != "vaswani_hf" and penalty != "power":
        raise ValueError(f"run {spec!r}: {engine} has only the |Y| ** alpha penalty (power)")
    max_tokens = None
    if budget:
        if engine == "marian":
            raise ValueError(f"run {spec!r}: marian decodes batches of {MARIAN_BATCH} sentences, not of MAX_TOKENS")
        if not budget.isdigit() or int(budget) == 0:
            raise ValueError(f"run {spec!r}: MAX_TOKENS after @ must be a positive whole number")
        max_tokens = int(budget)
    return engine, dtype, penalty, max_tokens


def load_test_set(test: str | None) -> tuple[list[str], list[str]]:
    if test is None:
        from ..data.default_corpus import load_default_corpus

        pairs = load_default_corpus()["test_help"]["translation"]
    else:
        from ..data.parallel import load_parallel

        pairs = load_parallel(test, src_lang="en", tgt_lang="de", split="test")["translation"]
    return [p["en"] for p in pairs], [p["de"] for p in pairs]


# ---------------------------------------------------------------------------------------------------------------------
# One run, in its own process
# ---------------------------------------------------------------------------------------------------------------------
def prepare(engine: str, dtype: str, penalty: str, max_tokens: int, model_dir: str, scratch: str):
    """Loads (and converts) the model, and returns `translate(sentences) -> hypotheses`; none of this is timed."""
    import torch
    from transformers import AutoTokenizer

    from .. import evaluation

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if engine == "vaswani_hf":
        model, tokenizer, _ = evaluation.load_model(model_dir, device="cpu", dtype=dtype)
        options = {"length_penalty_type": "power"} if penalty == "power" else {}
        return lambda sentences: evaluation.translate(model, tokenizer, sentences, max_tokens=max_tokens, **options)
    if engine == "marian":
        from ..export.marian import to_marian

        model, _, _ = evaluation.load_model(model_dir, device="cpu")
        marian = to_marian(model).to(evaluation.DTYPES[dtype])
        del model

        @torch.inference_mode()
        def translate(sentences):
            hypotheses = []
            for start in range(0, len(sentences), MARIAN_BATCH):
                inputs = tokenizer(sentences[start : start + MARIAN_BATCH], padding=True, return_tensors="pt")
                limit = int(inputs.attention_mask.sum(-1).max()) + 50
                output = marian.generate(**inputs, **BEAM, early_stopping=True, max_new_tokens=limit)
                hypotheses += tokenizer.batch_decode(output, skip_special_tokens=True)
            return hypotheses

        return translate
    from ..export.ctranslate2 import CTranslate2Translator, convert_to_ctranslate2

    converted = Path(scratch) / "ct2"
    model, _, _ = evaluation.load_model(model_dir, device="cpu")
    convert_to_ctranslate2(model, converted, tokenizer=tokenizer)
    translator = CTranslate2Translator(
        converted,
        tokenizer,
        compute_type="int8" if dtype == "int8" else "default",
        intra_threads=torch.get_num_threads(),
    )
    return lambda sentences: translator.translate(sentences, **BEAM, max_batch_size=max_tokens, batch_type="tokens")


def worker(spec: str, model_dir: str, test: str | None, result_path: str) -> None:
    import torch

    from ..analysis.layer_comparison import peak_memory
    from ..training.memory import keep_freed_memory

    keep_freed_memory()
    engine, dtype, penalty, max_tokens = parse_run(spec)
    sources, _ = load_test_set(test)
    with tempfile.TemporaryDirectory() as scratch:
        default = DEFAULT_MAX_TOKENS if engine == "vaswani_hf" else CTRANSLATE2_MAX_TOKENS
        translate = prepare(engine, dtype, penalty, max_tokens or default, model_dir, scratch)
        translate(sources[:16])  # warm-up: allocators, kernels, the first call's one-off costs
        result = {}

        def run():
            started = time.perf_counter()
            result["hypotheses"] = translate(sources)
            result["seconds"] = time.perf_counter() - started

        peak = peak_memory(run, torch.device("cpu"))
    result.update(spec=spec, threads=torch.get_num_threads(), peak_mib=None if peak is None else peak / 2**20)
    Path(result_path).write_text(json.dumps(result, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------------------------
# All runs, and the report
# ---------------------------------------------------------------------------------------------------------------------
def measure(spec: str, model_dir: str, test: str | None) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        result_path = Path(scratch) / "result.json"
        # This module's --worker, whichever script started the benchmark.
        command = [sys.executable, "-m", "vaswani_hf.benchmarks.translation", "--worker", spec, model_dir]
        command += ["--result", str(result_path)]
        command += ["--test", test] if test is not None else []
        subprocess.run(command, check=True)
        return json.loads(result_path.read_text())


def batching(sources: list[str], hypotheses: list[str], tokenizer, generation_config) -> dict:
    """How much of the work each batching does is padding, from the sentences' source and output lengths: the share of
    padded source positions, and of decoder steps taken for sentences that had already ended (a batch decodes until
    its longest output ends). `vaswani_hf` batches length-sorted sentences as `evaluation.translate` does by default
    with the model's `generation_config` (each counted at its output limit, source length + 50), Marian 32 sentences
    in file order."""
    from ..data.batching import length_batches

    source_ids = tokenizer(sources)["input_ids"]
    source_lengths = [len(ids) for ids in source_ids]
    output_lengths = [len(ids) for ids in tokenizer(hypotheses)["input_ids"]]
    schemes = {
        "vaswani_hf": length_batches(decoding_lengths(generation_config, source_ids, {}), DEFAULT_MAX_TOKENS),
        "marian": [list(range(i, min(i + MARIAN_BATCH, len(sources)))) for i in range(0, len(sources), MARIAN_BATCH)],
    }
    shares = {}
    for name, batches in schemes.items():
        padded_source = sum(len(b) * max(source_lengths[i] for i in b) for b in batches)
        padded_steps = sum(len(b) * max(output_lengths[i] for i in b) for b in batches)
        shares[name] = {
            "batches": len(batches),
            "source_padding_share": 1 - sum(source_lengths) / padded_source,
            "decoder_padding_share": 1 - sum(output_lengths) / padded_steps,
        }
    return shares


def report(results: list[dict], model_dir: str, test: str | None) -> dict:
    from transformers import AutoTokenizer, GenerationConfig

    from ..evaluation import score

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sources, references = load_test_set(test)
    reference = next((r["hypotheses"] for r in results if r["spec"] == REFERENCE_RUN), None)
    rows = []
    for result in results:
        hypotheses = result["hypotheses"]
        scores = score(hypotheses, references)
        tokens = sum(len(ids) for ids in tokenizer(hypotheses)["input_ids"])
        rows.append(
            {
                "run": result["spec"],
                "sentences": len(hypotheses),
                "seconds": result["seconds"],
                "sentences_per_s": len(hypotheses) / result["seconds"],
                "target_tokens_per_s": tokens / result["seconds"],
                "peak_mib": result["peak_mib"],
                "bleu": scores["bleu"],
                "chrf": scores["chrf"],
                "identical_to_reference": None
                if reference is None
                else sum(a == b for a, b in zip(hypotheses, reference, strict=True)),
                "threads": result["threads"],
            }
        )
    data = {"model_dir": model_dir, "test": test or "built-in test_help", "reference_run": REFERENCE_RUN, "rows": rows}
    if reference is not None:
        data["batching"] = batching(sources, reference, tokenizer, GenerationConfig.from_pretrained(model_dir))
    return data


def markdown(data: dict) -> str:
    by_run = {row["run"]: row for row in data["rows"]}
    lines = [
        "| run | seconds | sentences/s | target tokens/s | x marian, same dtype | peak MiB | BLEU | chrF | identical to "
        f"{data['reference_run']} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        dtype = parse_run(row["run"])[1]
        marian = by_run.get(f"marian:{dtype}")
        ratio = f"{marian['seconds'] / row['seconds']:.2f}x" if marian else "-"
        peak = f"{row['peak_mib']:,.0f}" if row["peak_mib"] is not None else "-"
        same = (
            "-"
            if row["identical_to_reference"] is None
            else f"{row['identical_to_reference']:,} / {row['sentences']:,}"
        )
        lines.append(
            f"| {row['run']} | {row['seconds']:.1f} | {row['sentences_per_s']:.1f} | {row['target_tokens_per_s']:,.0f} "
            f"| {ratio} | {peak} | {row['bleu']:.2f} | {row['chrf']:.2f} | {same} |"
        )
    for name, share in data.get("batching", {}).items():
        lines.append(
            f"\n{name} batching: {share['batches']} batches, {share['source_padding_share']:.0%} of source positions "
            f"and {share['decoder_padding_share']:.0%} of decoder steps are padding"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a saved post-norm VaswaniForConditionalGeneration and its tokenizer")
    parser.add_argument("--test", help="a parallel en-de test set load_parallel reads (default: built-in test_help)")
    parser.add_argument(
        "--runs", nargs="+", default=list(DEFAULT_RUNS), help="ENGINE:DTYPE[:PENALTY][@MAX_TOKENS] (default: all)"
    )
    parser.add_argument("--output", help="JSON file for the figures")
    parser.add_argument("--markdown", help="Markdown file for the table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model_dir, args.test, args.result)
        return 0
    try:
        for spec in args.runs:
            parse_run(spec)
    except ValueError as error:
        parser.error(str(error))
    results = []
    for spec in args.runs:
        print(f"== {spec}", flush=True)
        results.append(measure(spec, args.model_dir, args.test))
        print(f"   {results[-1]['seconds']:.1f} s", flush=True)
    data = report(results, args.model_dir, args.test)
    data["provenance"] = provenance([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])
    table = markdown(data)
    print(table)
    if args.output:
        write_atomic(args.output, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if args.markdown:
        write_atomic(args.markdown, table)
    return 0


if __name__ == "__main__":  # the worker processes of `measure`; users run scripts/benchmark_translation.py
    raise SystemExit(main())
