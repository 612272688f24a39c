"""From text files of a WMT-sized corpus to the first training update: how long a user waits, and the memory it takes.

    python scripts/benchmark_corpus.py --output docs/benchmarks/corpus-wmt-size.json \
        --markdown docs/benchmarks/corpus-wmt-size.md

The corpus is built in code, no download: the built-in corpus's training pairs repeated with numbered variants
("... (17)" on both sides, so that no variant is a duplicate of another) up to `--pairs` (default 4,500,000, the size
of WMT14 English-German, the paper's data), written as two line-aligned text files. Then each run is one command, in
a process of its own, timed from its start:

- `cold`: `vaswani-train --config small-cpu` on those files with an empty cache: cleaning, BPE training and
  tokenization (`vaswani_hf.data.prepared`) before the first update;
- `second-start`: the same command into a new output folder, the cache now full;
- `resume`: `--resume` of the cold run, two updates further;
- `two-processes`: the second start as two data-parallel processes (`vaswani_hf.training.launch`), the second of
  which opens what the first prepared;
- `stock`: what transformers' translation example does with the same files and tokenizer: `datasets.load_dataset`
  ("text"), `Dataset.map` of the tokenizer over every pair, then `Seq2SeqTrainer` with `DataCollatorForSeq2Seq`
  for two updates (`--skip-stock` leaves it out).

Figures: seconds to the first update (the first tick of the run's progress bar past where it started) and to the
end, and the memory of the largest process: its peak anonymous memory (RssAnon, what it allocated) and its peak
resident memory (`ru_maxrss`, which adds the pages of the files it maps, such as the prepared corpus). Run it alone on
the machine: the figures are times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..files import write_atomic
from ..provenance import provenance
from ..training.launch import train_command

WMT14_PAIRS = 4_500_000
RUNS = ("cold", "second-start", "resume", "two-processes", "stock")
# A tick of a tqdm bar: "  3/4 [" (count/total).
_TICK = re.compile(rb"(\d+)/(\d+) \[")


def build_corpus(prefix: Path, pairs: int) -> dict:
    """Writes `prefix.en` and `prefix.de`: the built-in corpus's training pairs, then numbered variants of them, up to
    `pairs` lines. Returns their size."""
    from ..data.default_corpus import load_default_corpus

    column = load_default_corpus()["train"].data.column("translation").combine_chunks()
    english, german = column.field("en").to_pylist(), column.field("de").to_pylist()
    written = 0
    with open(f"{prefix}.en", "w", encoding="utf-8") as en, open(f"{prefix}.de", "w", encoding="utf-8") as de:
        variant = 0
        while written < pairs:
            take = min(len(english), pairs - written)
            suffix = f" ({variant})" if variant else ""
            en.write("".join(f"{line}{suffix}\n" for line in english[:take]))
            de.write("".join(f"{line}{suffix}\n" for line in german[:take]))
            written += take
            variant += 1
    size = sum(Path(f"{prefix}.{lang}").stat().st_size for lang in ("en", "de"))
    return {"pairs": written, "megabytes": round(size / 1e6, 1), "base_pairs": len(english)}


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # it ended meanwhile
    return tree


def _anonymous_mib(pid: int) -> float:
    """The process's anonymous resident memory (RssAnon: its heap and stacks, not the files it maps), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(command: list[str], env: dict, log: Path, updates: int, initial: int = 0) -> dict:
    """Runs `command`, its output into `log`; returns the seconds to the first tick past `initial` of its progress
    bar of `updates` updates (not that of a preparation step) and to the end, the peak resident memory of the largest process it waited for (`ru_maxrss`, which counts the pages of
    the files a process maps, such as the prepared corpus: the kernel reclaims those at will), and the peak anonymous
    memory of its largest process (RssAnon, sampled 5 times a second: what it allocated itself)."""
    started = time.perf_counter()
    first, anonymous = None, {}
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                for pid in _process_tree(process.pid):
                    anonymous[pid] = max(anonymous.get(pid, 0.0), _anonymous_mib(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        buffer = b""
        while chunk := process.stdout.read1(65536):
            out.write(chunk)
            buffer = (buffer + chunk)[-4096:]
            ticks = _TICK.findall(buffer)
            if first is None and any(int(n) > initial and int(total) == updates for n, total in ticks):
                first = time.perf_counter() - started
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({code}); its output is in {log}")
    return {
        "seconds_to_first_update": None if first is None else round(first, 1),
        "seconds": round(seconds, 1),
        # ru_maxrss of a waited process covers its own waited children: the launcher's, its workers'.
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "peak_anonymous_mib": round(max(anonymous.values(), default=0.0)),
    }


def _stock_script(prefix: Path, tokenizer_dir: Path, output: Path, max_length: int) -> str:
    """transformers' translation example, cut to what it does before training, for these files and this tokenizer."""
    return f"""
import datasets, transformers
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer,
    Seq2SeqTrainingArguments)
import vaswani_hf
from vaswani_hf.training.architectures import build_model_config
from vaswani_hf.training.run_config import RunConfig

tokenizer = AutoTokenizer.from_pretrained({str(tokenizer_dir)!r})
en = datasets.load_dataset("text", data_files={str(prefix) + ".en"!r}, split="train")
de = datasets.load_dataset("text", data_files={str(prefix) + ".de"!r}, split="train")
pairs = datasets.concatenate_datasets([en.rename_column("text", "en"), de.rename_column("text", "de")], axis=1)

def preprocess(batch):
    return tokenizer(batch["en"], text_target=batch["de"], max_length={max_length}, truncation=True)

train = pairs.map(preprocess, batched=True, remove_columns=["en", "de"])
config = build_model_config(RunConfig.load("small-cpu").model, tokenizer)
model = AutoModelForSeq2SeqLM.from_config(config)
args = Seq2SeqTrainingArguments({str(output)!r}, max_steps=2, per_device_train_batch_size=64, save_strategy="no",
    report_to=[], use_cpu=True, dataloader_pin_memory=False)
Seq2SeqTrainer(model=model, args=args, train_dataset=train,
    data_collator=DataCollatorForSeq2Seq(tokenizer, model=model)).train()
"""


def run_benchmark(work: Path, pairs: int, runs: tuple[str, ...], log=print) -> dict:
    """Builds the corpus in `work` and times `runs` (see the module); returns the report."""
    prefix = work / "wmt-size"
    cache = work / "cache"
    log(f"building the corpus: {pairs} pairs")
    corpus = build_corpus(prefix, pairs)
    # Caches of their own, so that every run starts as cold as it says: the package's and datasets'.
    env = {**os.environ, "VASWANI_HF_CACHE": str(cache), "HF_DATASETS_CACHE": str(work / "datasets-cache"),
           "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    # The default corpus is the source of the variants; its cache is reused, not rebuilt.
    from ..data.default_corpus import CACHE_SUBDIR, default_cache_dir

    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / CACHE_SUBDIR).exists():
        (cache / CACHE_SUBDIR).symlink_to(default_cache_dir() / CACHE_SUBDIR)

    def arguments(output: str, steps: int) -> list[str]:
        return ["--config", "small-cpu", f"data.corpus={prefix}", f"output_dir={work / output}",
                f"train.max_steps={steps}", "train.max_minutes=null", "checkpoint.average_last=1"]  # fmt: skip

    results = {}
    plan = {
        "cold": lambda: timed(train_command(1, arguments("cold", 2)), env, work / "cold.log", 2),
        "second-start": lambda: timed(train_command(1, arguments("second", 2)), env, work / "second.log", 2),
        "resume": lambda: timed(
            train_command(1, [*arguments("cold", 4), "--resume"]), env, work / "resume.log", 4, initial=2
        ),
        "two-processes": lambda: timed(
            train_command(2, arguments("two", 2)), {**env, "OMP_NUM_THREADS": "1"}, work / "two.log", 2
        ),
        "stock": lambda: timed(
            [sys.executable, "-c", _stock_script(prefix, work / "cold" / "tokenizer", work / "stock", 128)],
            env,
            work / "stock.log",
            2,
        ),
    }
    for name in runs:
        if name != "cold" and name != "stock" and "cold" not in results and not (work / "cold").exists():
            raise ValueError(f"run {name!r} needs the cold run first")
        log(f"{name} ...")
        results[name] = plan[name]()
        log(f"{name}: {results[name]}")
    prepared = {p.name: json.loads((p / "record.json").read_text()) for p in sorted(cache.glob("prepared/*-*"))}
    return {"corpus": corpus, "runs": results, "prepared": prepared}


def markdown(report: dict) -> str:
    corpus = report["corpus"]
    lines = [
        f"Corpus: {corpus['pairs']:,} pairs, {corpus['megabytes']:,} MB of text (the built-in corpus's "
        f"{corpus['base_pairs']:,} training pairs and numbered variants of them).",
        "",
        "| run | seconds to the first update | seconds in all | peak anonymous MiB | peak resident MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in report["runs"].items():
        first = "-" if run["seconds_to_first_update"] is None else f"{run['seconds_to_first_update']:,.1f}"
        lines.append(
            f"| {name} | {first} | {run['seconds']:,.1f} | {run['peak_anonymous_mib']:,} | {run['peak_rss_mib']:,} |"
        )
    lines += [
        "",
        "Memory is that of the largest process: anonymous is what it allocated itself (RssAnon, sampled 5 times a "
        "second); resident adds the pages of the files it maps, the prepared corpus among them, which the kernel "
        "reclaims at will (`ru_maxrss`).",
    ]
    source = report["provenance"]
    versions = ", ".join(f"{name} {version}" for name, version in source["versions"].items())
    lines += [
        "",
        f"CPU: {source['cpu']['model']} ({source['cpu']['cores']} cores); commit {source['commit']}; {versions}.",
    ]
    lines += [f"Command: `{source['command']}`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=WMT14_PAIRS, help=f"corpus size (default: {WMT14_PAIRS:,})")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS), help="which runs (default: all)")
    parser.add_argument("--skip-stock", action="store_true", help="leave out the stock datasets + Trainer run")
    parser.add_argument("--work-dir", help="where the corpus, cache and runs go (default: a temporary folder)")
    parser.add_argument("--output", help="results JSON")
    parser.add_argument("--markdown", help="results table")
    args = parser.parse_args(argv)
    runs = tuple(name for name in args.runs if not (args.skip_stock and name == "stock"))
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        report = run_benchmark(work, args.pairs, runs)
    else:
        with tempfile.TemporaryDirectory(prefix="vaswani_hf-corpus-") as folder:
            report = run_benchmark(Path(folder), args.pairs, runs)
    report["provenance"] = provenance(None if argv is None else ["benchmark_corpus.py", *argv])
    text = json.dumps(report, indent=2) + "\n"
    if args.output:
        write_atomic(args.output, text)
    if args.markdown:
        write_atomic(args.markdown, markdown(report))
    print(markdown(report))
    return 0
