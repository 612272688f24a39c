"""Speed of vaswani_hf against transformers' MarianMTModel (and CTranslate2) at the same size, side by side.

    python scripts/benchmark.py                      # the headline shape on this machine's CPU, table to stdout
    python scripts/benchmark.py --shapes all --output bench.json --markdown bench.md
    python scripts/benchmark.py --device cuda --dtype bf16 --shapes all

Both models are built from the same hyper-parameters (the paper's base size, 8000-token vocabulary unless changed):
ReLU, post-norm, embeddings scaled by sqrt(d_model), sinusoidal positions, one matrix for the embeddings and the output
projection, dropout 0.1 on the sub-layers and embeddings, none inside attention or the FFN. Marian differs only where it
cannot be configured alike: its sinusoids are concatenated rather than interleaved, and it adds a (zero) bias to the
logits. Both read the same random batch, compute the same loss (cross-entropy with the paper's label smoothing 0.1,
averaged over the target tokens: `vaswani_hf.training.loss.training_loss`) and use the same optimizer
(`vaswani_hf.training.optim.paper_adam`).

Every measurement runs in a fresh process, so that one model's memory or allocator state does not leak into the
other's figures. Figures:
- train: target tokens per second of forward + backward + Adam step; the model FLOPs of one step as counted by
  `torch.utils.flop_counter` (every matmul, the attention products included), and that rate as a fraction of this machine's measured dense
  matmul peak in the same dtype;
- greedy / beam4: output tokens per second (one per sentence per step, whatever the beam) when every sentence is forced
  to the same output length (`min_new_tokens = max_new_tokens`), which keeps the work identical for all engines;
- memory: the peak that the calls (warm-up included, so for training Adam's state too) add to what the loaded model
  holds: on CUDA from `torch.cuda.max_memory_allocated`; on a CPU, Linux's peak resident memory (VmHWM), reset
  before the calls (`vaswani_hf.analysis.layer_comparison.peak_memory`), with glibc asked to keep freed memory
  (`keep_freed_memory`, as vaswani_hf's training does) so that the figure is the heap the calls needed.
Times are the median of `--repeats` calls after `--warmup` calls; with `--rounds N`, of all the calls of N such
measurements, made in turn (ours, Marian, ours, ...), so that a drift in the machine's speed, common on shared cloud
machines, does not favour the engine measured at the better moment.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..files import write_atomic
from ..provenance import provenance

HEADLINE = [(16, 32)]
# (batch, length): longer sequences at the headline batch's token count or above, and larger batches.
TRAIN_SHAPES = HEADLINE + [(16, 128), (8, 512), (4, 1024), (64, 32), (128, 32)]
# Decoding cost grows with the output length step by step: shorter ladders than training keep a CPU run short.
DECODE_SHAPES = HEADLINE + [(16, 128), (4, 512), (64, 32), (128, 32)]
ENGINES = ("vaswani_hf", "marian", "ctranslate2")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Cell:
    engine: str
    mode: str  # train, greedy, beam4
    batch: int
    length: int  # source length = target length (train) = forced output length (decoding)
    device: str
    dtype: str
    threads: int | None
    vocab_size: int
    d_model: int
    d_ff: int
    num_heads: int
    layers: int
    attn_implementation: str
    warmup: int
    repeats: int
    profile: bool = False
    compile: bool = False  # train through torch.compile(model), both engines


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------
def build_vaswani(cell: Cell):
    from .. import VaswaniConfig, VaswaniForConditionalGeneration

    config = VaswaniConfig.base(
        vocab_size=cell.vocab_size,
        d_model=cell.d_model,
        d_ff=cell.d_ff,
        num_heads=cell.num_heads,
        encoder_layers=cell.layers,
        decoder_layers=cell.layers,
        max_position_embeddings=max(1024, cell.length + 2),
    )
    return VaswaniForConditionalGeneration._from_config(config, attn_implementation=cell.attn_implementation)


def build_marian(cell: Cell):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=cell.vocab_size,
        d_model=cell.d_model,
        encoder_layers=cell.layers,
        decoder_layers=cell.layers,
        encoder_attention_heads=cell.num_heads,
        decoder_attention_heads=cell.num_heads,
        encoder_ffn_dim=cell.d_ff,
        decoder_ffn_dim=cell.d_ff,
        activation_function="relu",
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        max_position_embeddings=max(1024, cell.length + 2),
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        forced_eos_token_id=None,
    )
    return MarianMTModel._from_config(config, attn_implementation=cell.attn_implementation)


def random_batch(cell: Cell, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source and target ids avoiding the special tokens 0-2, identical for every engine (fixed seed)."""
    generator = torch.Generator().manual_seed(1234)
    source = torch.randint(3, cell.vocab_size, (cell.batch, cell.length), generator=generator)
    target = torch.randint(3, cell.vocab_size, (cell.batch, cell.length), generator=generator)
    return source.to(device), target.to(device)


# ---------------------------------------------------------------------------------------------------------------------
# Measurements (run inside a worker process)
# ---------------------------------------------------------------------------------------------------------------------
def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timed_with_peak_memory(fn, device: torch.device, cell: Cell) -> tuple[list[float], float | None]:
    """`timed(fn, ...)` and the peak memory in MiB that the calls added to what was allocated before them."""
    from ..analysis.layer_comparison import peak_memory

    times = []
    peak = peak_memory(lambda: times.extend(timed(fn, device, cell.warmup, cell.repeats)), device)
    return times, None if peak is None else peak / 2**20


def autocast(cell: Cell, device: torch.device):
    if cell.dtype == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=DTYPES[cell.dtype])


def measure_train(cell: Cell, device: torch.device) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from ..training.loss import training_loss
    from ..training.optim import paper_adam

    model = (build_vaswani if cell.engine == "vaswani_hf" else build_marian)(cell).to(device).train()
    optimizer = paper_adam(model.parameters(), lr_scale=1e-4)
    source, target = random_batch(cell, device)
    batch = {"input_ids": source, "attention_mask": torch.ones_like(source), "labels": target}

    # Inductor's default mode; the warm-up calls pay for the compilation, the timed ones run the compiled graphs.
    timed_forward = torch.compile(model) if cell.compile else model

    def step(forward=timed_forward):
        with autocast(cell, device):
            # The training recipe's loss for both models: the paper's label smoothing 0.1 on their logits.
            loss = training_loss(forward, batch, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times, peak = timed_with_peak_memory(step, device, cell)
    # torch's FLOP counter does not see sdpa's CPU kernel: count a step with the eager kernel, which computes the same
    # products as plain matmuls, uncompiled.
    model.set_attn_implementation("eager")
    with FlopCounterMode(display=False) as counter:
        step(model)
    model.set_attn_implementation(cell.attn_implementation)
    if cell.profile:
        print_profile(step, cell)
    seconds = statistics.median(times)
    flops = counter.get_total_flops()
    return {
        "tokens_per_s": cell.batch * cell.length / seconds,
        "seconds": seconds,
        "times": times,
        "peak_mib": peak,
        "flops_per_step": flops,
        "tflops": flops / seconds / 1e12,
    }


def measure_decode(cell: Cell, device: torch.device) -> dict:
    model = (build_vaswani if cell.engine == "vaswani_hf" else build_marian)(cell).to(device).eval()
    if cell.dtype != "fp32":
        model = model.to(DTYPES[cell.dtype])
    source, _ = random_batch(cell, device)
    mask = torch.ones_like(source)
    beams = 4 if cell.mode == "beam4" else 1
    outputs = []

    def decode():
        out = model.generate(
            input_ids=source,
            attention_mask=mask,
            num_beams=beams,
            do_sample=False,
            min_new_tokens=cell.length,
            max_new_tokens=cell.length,
            early_stopping=False,
        )
        outputs.append(out.shape[1])

    times, peak = timed_with_peak_memory(decode, device, cell)
    if cell.profile:
        print_profile(decode, cell)
    # The decoder start token plus the forced number of new tokens: a shorter output would make the figure a lie.
    if set(outputs) != {cell.length + 1}:
        raise RuntimeError(f"{cell.engine} produced outputs of lengths {sorted(set(outputs))}, not {cell.length + 1}")
    seconds = statistics.median(times)
    return {"tokens_per_s": cell.batch * cell.length / seconds, "seconds": seconds, "times": times, "peak_mib": peak}


def measure_ctranslate2(cell: Cell, device: torch.device) -> dict:
    """The same random-weight model as vaswani_hf's, converted (weights in `cell.dtype`), decoding the same batch."""
    from ..export.ctranslate2 import CTranslate2Translator, convert_to_ctranslate2

    model = build_vaswani(cell).eval()
    source, _ = random_batch(cell, torch.device("cpu"))
    beams = 4 if cell.mode == "beam4" else 1
    with tempfile.TemporaryDirectory() as tmp:
        convert_to_ctranslate2(model, Path(tmp) / "ct2")
        translator = CTranslate2Translator(
            Path(tmp) / "ct2",
            device=device.type,
            compute_type={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[cell.dtype],
            # torch's default on a CPU is one thread per core; CTranslate2's would be 4.
            intra_threads=cell.threads or (torch.get_num_threads() if device.type == "cpu" else 0),
        )
        outputs = []

        def decode():
            outputs.append(translator.generate_ids(source.tolist(), num_beams=beams, fixed_length=cell.length))

        times, peak = timed_with_peak_memory(decode, device, cell)
    lengths = {len(ids) for batch in outputs for ids in batch}
    if lengths != {cell.length}:
        raise RuntimeError(f"ctranslate2 produced outputs of lengths {sorted(lengths)}, not {cell.length}")
    seconds = statistics.median(times)
    return {"tokens_per_s": cell.batch * cell.length / seconds, "seconds": seconds, "times": times, "peak_mib": peak}


def print_profile(fn, cell: Cell, rows: int = 15):
    """The operators that took the most time in one more call, to stderr."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cell.device.startswith("cuda") else [])
    with profile(activities=activities) as profiler:
        fn()
    print(f"{cell.engine} {cell.mode} {cell.batch} x {cell.length}:", file=sys.stderr)
    sort = "self_cuda_time_total" if cell.device.startswith("cuda") else "self_cpu_time_total"
    print(profiler.key_averages().table(sort_by=sort, row_limit=rows), file=sys.stderr)


def matmul_peak(device: torch.device, dtype: str, size: int = 2048, repeats: int = 10) -> float:
    """Dense matmul rate of this machine in TFLOP/s: the best of `repeats` (size x size) @ (size x size) products."""
    torch_dtype = DTYPES[dtype]
    a = torch.randn(size, size, device=device, dtype=torch_dtype)
    b = torch.randn(size, size, device=device, dtype=torch_dtype)
    times = timed(lambda: a @ b, device, warmup=3, repeats=repeats)
    return 2 * size**3 / min(times) / 1e12


def run_worker(payload: str) -> dict:
    spec = json.loads(payload)
    if spec.get("kind") == "peak":
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        return {"tflops": matmul_peak(torch.device(spec["device"]), spec["dtype"])}
    cell = Cell(**spec)
    if cell.threads:
        torch.set_num_threads(cell.threads)
    device = torch.device(cell.device)
    torch.manual_seed(0)
    if cell.engine == "ctranslate2":
        return measure_ctranslate2(cell, device)
    return (measure_train if cell.mode == "train" else measure_decode)(cell, device)


# ---------------------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------------------
def in_fresh_process(payload: dict, timeout: int) -> dict:
    """Runs one measurement in a new Python process (this module's `--worker`, whichever script started the
    benchmark); its stderr (errors, --profile tables) passes through."""
    process = subprocess.run(
        [sys.executable, "-m", "vaswani_hf.benchmarks.speed", "--worker", json.dumps(payload)],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
    )
    if process.returncode != 0:
        raise RuntimeError(f"the measurement {payload} failed (its error is printed above)")
    return json.loads(process.stdout.strip().splitlines()[-1])


def parse_shape(text: str) -> tuple[int, int]:
    try:
        batch, length = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not BATCHxLENGTH, e.g. 16x32") from None
    if batch < 1 or length < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch and length must be positive")
    return batch, length


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--shapes", choices=("headline", "all"), default="headline")
    parser.add_argument(
        "--shape", action="append", type=parse_shape, metavar="BxL", help="measure this batch x length instead"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=("train", "greedy", "beam4"), default=["train", "greedy", "beam4"]
    )
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--d-ff", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--attn-implementation", choices=("eager", "sdpa"), default="sdpa")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every cell this many times, the engines taking turns, and report the median of all the calls: "
        "a machine whose speed drifts then slows every engine alike (default: 1)",
    )
    parser.add_argument("--profile", action="store_true", help="print each measurement's top operators to stderr")
    parser.add_argument(
        "--compile", action="store_true", help="train through torch.compile(model) (inductor); decoding stays eager"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed to each measurement")
    parser.add_argument("--output", type=Path, help="write all figures as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.worker is None and args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch here")
    return args


def cells(args) -> list[Cell]:
    out = []
    for mode in args.modes:
        shapes = (TRAIN_SHAPES if mode == "train" else DECODE_SHAPES) if args.shapes == "all" else HEADLINE
        shapes = args.shape or shapes
        for batch, length in shapes:
            for engine in args.engines:
                if engine == "ctranslate2" and mode == "train":
                    continue  # an inference engine
                out.append(
                    Cell(
                        engine,
                        mode,
                        batch,
                        length,
                        args.device,
                        args.dtype,
                        args.threads,
                        args.vocab_size,
                        args.d_model,
                        args.d_ff,
                        args.heads,
                        args.layers,
                        args.attn_implementation,
                        args.warmup,
                        args.repeats,
                        args.profile,
                        args.compile and mode == "train",
                    )
                )
    return out


def merge_rounds(cell: Cell, rounds: list[dict]) -> dict:
    """One cell's figures over its rounds: the median of every timed call, the highest memory peak."""
    times = [t for figures in rounds for t in figures["times"]]
    seconds = statistics.median(times)
    peaks = [figures["peak_mib"] for figures in rounds if figures["peak_mib"] is not None]
    merged = {
        **rounds[0],
        "tokens_per_s": cell.batch * cell.length / seconds,
        "seconds": seconds,
        "times": times,
        "peak_mib": max(peaks) if peaks else None,
        "rounds": len(rounds),
    }
    if "flops_per_step" in merged:
        merged["tflops"] = merged["flops_per_step"] / seconds / 1e12
    return merged


def mib(result: dict) -> str:
    return "?" if result["peak_mib"] is None else f"{result['peak_mib']:,.0f}"


def table(results: list[dict], peak_tflops: float) -> str:
    """Markdown: one row per mode and shape, each engine's tokens/s and memory, and the ratios to Marian."""
    rows = {}
    for r in results:
        mode = r["mode"] + (" (compiled)" if r.get("compile") else "")
        rows.setdefault((mode, r["batch"], r["length"]), {})[r["engine"]] = r
    lines = [
        "| mode | batch x length | vaswani_hf tok/s | Marian tok/s | CTranslate2 tok/s | vaswani_hf / Marian | "
        "CTranslate2 / Marian | memory MiB (ours / Marian) | ours % of matmul peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (mode, batch, length), by_engine in rows.items():
        ours, marian, ct2 = (by_engine.get(e) for e in ENGINES)

        def rate(r):
            return f"{r['tokens_per_s']:,.0f}" if r else "-"

        def ratio(a, b):
            return f"{a['tokens_per_s'] / b['tokens_per_s']:.2f}x" if a and b else "-"

        memory = f"{mib(ours)} / {mib(marian)}" if ours and marian else "-"
        utilisation = f"{100 * ours['tflops'] / peak_tflops:.0f}%" if ours and "tflops" in ours else "-"
        lines.append(
            f"| {mode} | {batch} x {length} | {rate(ours)} | {rate(marian)} | {rate(ct2)} | {ratio(ours, marian)} | "
            f"{ratio(ct2, marian)} | {memory} | {utilisation} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        # Process-wide, hence here and not in run_worker: a worker is a process of its own.
        if torch.device(json.loads(args.worker)["device"]).type == "cpu":
            from ..training.memory import keep_freed_memory

            keep_freed_memory()
        print(json.dumps(run_worker(args.worker)))
        return 0
    if "ctranslate2" in args.engines:
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            print("ctranslate2 is not installed (pip install 'vaswani_hf[ctranslate2]'): skipping it", file=sys.stderr)
            args.engines = [e for e in args.engines if e != "ctranslate2"]
    peak = in_fresh_process(
        {"kind": "peak", "device": args.device, "dtype": args.dtype, "threads": args.threads}, args.timeout
    )["tflops"]
    print(f"dense {args.dtype} matmul peak: {peak * 1000:,.0f} GFLOP/s", file=sys.stderr)
    measured = [(cell, []) for cell in cells(args)]
    for _ in range(args.rounds):
        for cell, rounds in measured:
            figures = in_fresh_process(asdict(cell), args.timeout)
            rounds.append(figures)
            print(
                f"{cell.mode:6s} {cell.batch:4d} x {cell.length:<5d} {cell.engine:12s} "
                f"{figures['tokens_per_s']:10,.0f} tok/s  {mib(figures):>8} MiB",
                file=sys.stderr,
                flush=True,
            )
    results = [{**asdict(cell), **merge_rounds(cell, rounds)} for cell, rounds in measured]
    markdown = table(results, peak)
    print(markdown)
    machine = {"threads": args.threads or torch.get_num_threads(), "matmul_peak_tflops": peak}
    if args.output:
        report = {"provenance": provenance(), "machine": machine, "results": results}
        write_atomic(args.output, json.dumps(report, indent=1))
    if args.markdown:
        write_atomic(args.markdown, markdown + "\n")
    return 0


if __name__ == "__main__":  # the worker processes of `in_fresh_process`; users run scripts/benchmark.py
    sys.exit(main())
