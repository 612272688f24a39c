"""The shell commands of README.md, docs/ and model_cards/ run as written, with tiny settings added, in a scratch
folder laid out as they expect: a tiny trained run in `outputs/main-job` (and its copies `outputs/main-job-tuned`,
`runs/base`), test files, and the built-in corpus built from fake packages into a cache of the scratch folder.

Each command has an entry in `COMMANDS`: how it runs here (what is added to make it tiny, whether it is slow), or why
it cannot (an upload to the Hub, a GPU, another commit checked out). A command of the pages that has no entry fails
`test_every_command_of_the_pages_has_an_entry`, so no new command goes unrun; an entry no page has fails it too.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from train_runs import TINY_RUN, WORDS, train

from vaswani_hf.data.default_corpus import load_default_corpus

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "model_cards").rglob("*.md"))]


def shell_commands(page: Path) -> list[str]:
    """Every command of the page's shell blocks, continuation lines joined and comments dropped, as `shlex.join`
    spells it."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                commands.append(shlex.join(tokens))
    return commands


@dataclass(frozen=True)
class Run:
    """Runs the command with `before` inserted after the program name and `after` appended: the tiny settings.
    `slow` ones train or benchmark, and run in a subprocess in the slow suite."""

    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    slow: bool = False


@dataclass(frozen=True)
class Skip:
    why: str


# The same for every architecture, for the study that trains the recurrent models too.
TINY_ANY_MODEL = tuple(setting for setting in TINY_RUN if not setting.startswith("model."))
FAST_DECODING = ("--num-beams", "1", "--max-new-tokens", "5", "--no-progress")
TINY_BENCHMARK = (
    "--repeats", "1", "--rounds", "1", "--warmup", "0", "--vocab-size", "200", "--d-model", "16", "--d-ff", "32",
    "--heads", "2", "--layers", "1", "--timeout", "300",
)  # fmt: skip
TINY_STREAMING = (
    "--test", "test.tsv", "--file-lines", "300", "--lines", "20", "--window", "8", "--runs", "stream", "whole",
    "--resume-lines", "100", "--resume-window", "10",
)  # fmt: skip
UPLOAD = "uploads to the Hub, which needs a network and a token; the --dry-run above stages and checks the same folder"
THIS_SUITE = "runs this suite"
GPU = "needs GPUs (or nodes); tests/test_accelerate_configs.py loads every shipped config"
BEFORE = "checks out an older commit for the benchmark's 'before' columns; the benchmark commands of the block run"

COMMANDS: dict[str, Run | Skip] = {
    # README.md
    "bash scripts/main_job.sh": Run(
        after=(
            "--minutes",
            "0.2",
            "--processes",
            "1",
            "--no-curve",
            "--output-dir",
            "{root}/outputs/main-job-sh",
            *TINY_RUN,
        ),
        slow=True,
    ),
    "bash .ci/run": Skip(THIS_SUITE),
    "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest": Skip(THIS_SUITE),
    "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m slow": Skip(THIS_SUITE),
    "git clone REPOSITORY_URL vaswani_hf": Skip("the repository's address is the reader's"),
    "python3 -m pip install -e ./vaswani_hf": Skip(".ci/run installs the package from a fresh clone the same way"),
    # docs/compatibility.md
    "vaswani-evaluate outputs/main-job/model --dataset '~/.cache/vaswani_hf/default_corpus-v1' --split test_help "
    "--src-lang en --tgt-lang de --dtype bf16 --output-dir eval-bf16": Run(after=FAST_DECODING),
    "HF_HUB_OFFLINE=1 python scripts/common_tests_report.py --output docs/benchmarks/common-tests.json": Skip(
        "runs tests/test_transformers_common.py and transformers' Marian tests, which the suite runs itself"
    ),
    # docs/publishing.md
    "vaswani-export-ct2 outputs/main-job/model --output-dir outputs/main-job/ctranslate2": Run(),
    "vaswani-export-ct2 outputs/main-job/model --output-dir outputs/main-job/ct2-int8 --quantization int8": Run(),
    "vaswani-export-ct2 outputs/main-job/model --output-dir outputs/main-job/ctranslate2 --force --check 200": Run(
        after=("--check-max-new-tokens", "5")
    ),
    "vaswani-push outputs/main-job/model --dry-run --stage-dir /tmp/main-job-upload": Run(),
    "vaswani-push outputs/main-job/model your-name/vaswani-transformer-en-de-small": Skip(UPLOAD),
    "vaswani-push runs/base/model your-name/transformer-base --exist-ok --max-shard-size 200MB --private": Skip(
        UPLOAD
    ),
    "vaswani-model-card outputs/main-job/model --output model_cards/main-job/README.md": Run(),
    "vaswani-model-card runs/base/model --repo-id your-name/transformer-base --output runs/base/model/README.md": Run(),
    # docs/speed.md
    "vaswani-main-job --no-curve --output-dir outputs/main-job-postnorm model.norm_first=false": Run(
        before=("--minutes", "0.2", "--processes", "1"), after=TINY_RUN, slow=True
    ),
    "vaswani-main-job --minutes 15 --no-curve --output-dir outputs/main-job-postnorm-15min model.norm_first=false": Run(
        after=("--minutes", "0.2", "--processes", "1", *TINY_RUN), slow=True
    ),
    "python scripts/benchmark_translation.py outputs/main-job-postnorm-15min/model --runs vaswani_hf:fp32:power "
    "vaswani_hf:fp32:gnmt vaswani_hf:fp32:gnmt@2048 vaswani_hf:fp32:gnmt@8192 marian:fp32 ctranslate2:fp32 --output "
    "docs/benchmarks/translation-memory-cpu.json --markdown docs/benchmarks/translation-memory-cpu.md": Run(
        after=("--test", "test.tsv"), slow=True
    ),
    # docs/training.md
    "python scripts/benchmark_corpus.py --output docs/benchmarks/corpus-wmt-size.json --markdown "
    "docs/benchmarks/corpus-wmt-size.md": Run(after=("--pairs", "2000", "--runs", "cold", "resume"), slow=True),
    "python scripts/benchmark_translation.py outputs/main-job-postnorm/model --output "
    "docs/benchmarks/translation-cpu.json --markdown docs/benchmarks/translation-cpu.md": Run(
        after=("--runs", "vaswani_hf:fp32:power", "marian:fp32", "ctranslate2:fp32", "--test", "test.tsv"), slow=True
    ),
    "python scripts/benchmark_streaming.py outputs/main-job/model --lines 3000 --window 1000 --resume-lines 600 "
    "--output docs/benchmarks/streaming-cpu.json --markdown docs/benchmarks/streaming-cpu.md": Run(
        after=TINY_STREAMING
    ),
    "'H=--modes train --engines vaswani_hf marian --rounds 3 --repeats 7'": Run(),
    "'S=--dtype bf16 --d-model 256 --d-ff 1024 --heads 4 --layers 3 --threads 1 --shape 64x32 "
    "--attn-implementation eager'": Run(),
    "python scripts/benchmark.py '$H' --output docs/benchmarks/cpu-train-fp32.json": Run(
        after=TINY_BENCHMARK, slow=True
    ),
    # fp32: where the CPU has no bf16 instructions, the matmul peak in emulated bf16 alone takes minutes.
    "python scripts/benchmark.py '$H' '$S' --output docs/benchmarks/cpu-train-small-bf16.json": Run(
        after=(*TINY_BENCHMARK, "--dtype", "fp32"), slow=True
    ),
    "git worktree add /tmp/before 8c3714e": Skip(BEFORE),
    "PYTHONPATH=/tmp/before python scripts/benchmark.py '$H' --output docs/benchmarks/cpu-train-fp32-before.json": Skip(
        BEFORE
    ),
    "PYTHONPATH=/tmp/before python scripts/benchmark.py '$H' '$S' --output "
    "docs/benchmarks/cpu-train-small-bf16-before.json": Skip(BEFORE),
    "python scripts/benchmark.py --modes train --engines vaswani_hf marian --repeats 5 --compile --output "
    "docs/benchmarks/cpu-train-fp32-compiled.json": Skip(
        "torch.compile of the full step takes minutes even for a tiny model; tests/test_benchmarks_speed.py runs the "
        "same benchmark without --compile"
    ),
    "python scripts/benchmark.py --repeats 7 --rounds 3 --output docs/benchmarks/cpu-headline.json --markdown "
    "docs/benchmarks/cpu-headline.md": Run(after=TINY_BENCHMARK, slow=True),
    "python scripts/benchmark.py --shapes all --warmup 1 --repeats 3 --output docs/benchmarks/cpu-all.json --markdown "
    "docs/benchmarks/cpu-all.md": Run(after=TINY_BENCHMARK, slow=True),
    # docs/studies.md
    "python scripts/plot_attention.py outputs/main-job/model 'Click the button to open the dialog.' --output-dir "
    "attention": Run(),
    "python scripts/plot_attention.py MODEL_DIR 'the house is small' --target 'das Haus ist klein' --output-dir "
    "attention": Run(),
    "flock /tmp/cpu.lock python scripts/compare_layers.py --output-dir docs/figures": Run(
        after=("--d-model", "16", "--num-heads", "2", "--min-repeats", "1", "--max-repeats", "1"), slow=True
    ),
    "python scripts/compare_layers.py --device cuda --batch-size 8 --output-dir results/gpu": Skip(
        "needs a GPU; the same script runs on the CPU above"
    ),
    "vaswani-study-recurrence --output-dir outputs/recurrence-study": Run(
        before=(
            "--minutes",
            "0.1",
            "--processes",
            "1",
            "--curve-sentences",
            "4",
            "--gradient-sentences",
            "4",
            "--lengths",
            "8",
            "16",
            "--timing-batch-size",
            "2",
            "--search-minutes",
            "0.05",
            "--search-sentences",
            "4",
            "--bucket-sentences",
            "1",
            "--gradient-updates",
            "2",
            "--length-minutes",
            "0.05",
        ),
        after=TINY_ANY_MODEL,
        slow=True,
    ),
    "vaswani-study-recurrence --minutes 5 --search-minutes 1 --output-dir outputs/recurrence-quick": Skip(
        "the same command as above with shorter budgets"
    ),
    # docs/training.md
    "vaswani-train --config base output_dir=runs/base data.corpus=data/train data.validation=data/valid": Run(
        after=TINY_RUN, slow=True
    ),
    "vaswani-train --config runs/my-run.yaml train.lr_scale=2 model.dropout=0.3": Run(after=TINY_RUN, slow=True),
    "vaswani-train --config base output_dir=runs/base --resume": Run(
        after=(*TINY_RUN, "data.corpus=data/train", "data.validation=data/valid"), slow=True
    ),
    "tensorboard --logdir runs/base/train": Skip("a viewer; tests/test_cli_train.py reads the event files it shows"),
    "accelerate launch --config_file scripts/accelerate/cpu-2proc.yaml -m vaswani_hf.cli.train --config small-cpu": Run(
        after=("output_dir=runs/two-processes", "data.corpus=data/train", *TINY_RUN), slow=True
    ),
    "accelerate launch --config_file scripts/accelerate/ddp.yaml -m vaswani_hf.cli.train --config base ...": Skip(GPU),
    "accelerate launch --config_file scripts/accelerate/fsdp.yaml -m vaswani_hf.cli.train --config big ...": Skip(GPU),
    "accelerate launch --config_file scripts/accelerate/ddp-multinode.yaml --main_process_ip '$MAIN_IP' "
    "--machine_rank '$RANK' -m vaswani_hf.cli.train ...": Skip(GPU),
    "vaswani-evaluate outputs/main-job/model --src test.en --ref test.de --output-dir results": Run(
        after=FAST_DECODING
    ),
    "vaswani-evaluate outputs/main-job/model --dataset '~/.cache/vaswani_hf/default_corpus-v1' --split test_help "
    "--src-lang en --tgt-lang de --output-dir results/help": Run(after=FAST_DECODING),
    "vaswani-evaluate --copy-baseline --src test.en --ref test.de": Run(),
    "echo 'Click the Save button.' '|' vaswani-translate outputs/main-job/model": Run(after=FAST_DECODING),
    "vaswani-translate outputs/main-job/model --input test.en --output test.hyp.de": Run(after=FAST_DECODING),
    "vaswani-average outputs/main-job --last 5 --output-dir outputs/main-job/model-avg5": Run(),
    "vaswani-finetune outputs/main-job/model --train dict.jsonl --validation dict-dev.jsonl --output-dir ft": Run(
        after=("--max-steps", "2")
    ),
    # model_cards/README.md
    "vaswani-model-card outputs/main-job-tuned/model --output model_cards/main-job/README.md": Run(),
}


def documented() -> dict[str, list[str]]:
    """Each command of the pages, with the pages that show it."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for command in shell_commands(page):
            found.setdefault(command, []).append(str(page.relative_to(ROOT)))
    return found


def test_every_command_of_the_pages_has_an_entry():
    commands = documented()
    missing = sorted(set(commands) - set(COMMANDS))
    stale = sorted(set(COMMANDS) - set(commands))
    assert not missing, "commands of the pages without an entry in COMMANDS:\n" + "\n".join(missing)
    assert not stale, "entries of COMMANDS that no page shows:\n" + "\n".join(stale)
    reasons = [how.why for how in COMMANDS.values() if isinstance(how, Skip)]
    assert all(len(why.split()) >= 3 for why in reasons), reasons


def test_the_parser_reads_continuations_comments_and_quotes(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```bash\nvaswani-x a \\\n    --b 'c d'   # a comment\n\n# only a comment\n```\n"
        '```python\nprint(1)\n```\n```sh\necho "x" | y\n```\n'
    )
    assert shell_commands(page) == ["vaswani-x a --b 'c d'", "echo x '|' y"]


# ---- the scratch folder -------------------------------------------------------------------------------------------


def corpus_rows(count: int, seed: int) -> list[dict]:
    """Word-for-word pairs of the toy corpus's words."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        en = [rng.choice(list(WORDS)) for _ in range(rng.randint(2, 6))]
        rows.append({"en": " ".join(en), "de": " ".join(WORDS[word] for word in en)})
    return rows


def prepare_scratch(root: Path, corpus: Path, with_run: bool) -> dict[str, str]:
    """What the commands expect in `root`, and the environment they run in."""
    home = root / "home"
    cache = home / ".cache" / "vaswani_hf"
    # The built-in corpus, built from the fake packages of `fake_corpus_fetch`, with its card and fetch record.
    load_default_corpus(cache)
    test = corpus_rows(12, seed=7)
    (root / "test.en").write_text("".join(row["en"] + "\n" for row in test), encoding="utf-8")
    (root / "test.de").write_text("".join(row["de"] + "\n" for row in test), encoding="utf-8")
    (root / "test.tsv").write_text("".join(f"{row['en']}\t{row['de']}\n" for row in test), encoding="utf-8")
    for name, seed in (("dict.jsonl", 8), ("dict-dev.jsonl", 9)):
        rows = corpus_rows(16, seed)
        (root / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (root / "data").mkdir()
    for split, seed, count in (("train", 10, 300), ("valid", 11, 12)):
        rows = corpus_rows(count, seed)
        for lang in ("en", "de"):
            (root / "data" / f"{split}.{lang}").write_text("".join(row[lang] + "\n" for row in rows))
    (root / "runs").mkdir()
    (root / "runs" / "my-run.yaml").write_text(
        "output_dir: runs/my-run\nmodel:\n  d_model: 16\ndata:\n  corpus: data/train\n  validation: data/valid\n"
    )
    for folder in ("model_cards/main-job", "docs/benchmarks", "docs/figures", "tmp"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    if with_run:
        # A finished run with more than five checkpoints, as the main job leaves one.
        run = root / "outputs" / "main-job"
        train(corpus, run, "train.max_steps=12", "checkpoint.every_steps=2", "checkpoint.keep=20")
        shutil.copytree(run, root / "outputs" / "main-job-tuned", symlinks=True)
        shutil.copytree(run, root / "runs" / "base", symlinks=True)
    return {"HOME": str(home), "VASWANI_HF_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def argv_of(command: str, how: Run, root: Path, variables: dict[str, str]) -> tuple[list[str], dict, str | None]:
    """The command's words with the tiny settings, its environment assignments, and what a pipe gives its stdin."""
    tokens = shlex.split(command)
    stdin = None
    if "|" in tokens:
        bar = tokens.index("|")
        assert tokens[0] == "echo", command
        stdin, tokens = " ".join(tokens[1:bar]) + "\n", tokens[bar + 1 :]
    env = {}
    while tokens and re.fullmatch(r"[A-Z_]+=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    if tokens[:2] == ["flock", "/tmp/cpu.lock"]:
        tokens = tokens[2:]
    words = []
    for token in tokens:
        if token.startswith("$"):
            words.extend(shlex.split(variables[token[1:]]))
        elif token == "MODEL_DIR":
            words.append("outputs/main-job/model")
        elif token.startswith("/tmp/"):
            words.append(str(root / token.lstrip("/")))
        elif token.startswith("~/"):
            words.append(str(Path(env.get("HOME", root / "home")) / token[2:]))
        else:
            words.append(token)
    after = [word.format(root=root) for word in how.after]
    return [words[0], *how.before, *words[1:], *after], env, stdin


def run_in_process(argv: list[str], stdin: str | None, monkeypatch, capsys) -> str:
    """Runs an installed command's `main` or a script of `scripts/` in this process; returns its stdout."""
    if stdin is not None:
        # A real file: the commands read stdin's bytes through its file descriptor, as they read a pipe.
        piped = Path(f".stdin-{len(stdin)}")
        piped.write_text(stdin, encoding="utf-8")
        monkeypatch.setattr(sys, "stdin", piped.open(encoding="utf-8"))
    try:
        if argv[0].startswith("vaswani-"):
            (script,) = entry_points(group="console_scripts", name=argv[0])
            code = script.load()(argv[1:])
        else:
            assert argv[0] == "python" and argv[1].startswith("scripts/"), argv
            monkeypatch.setattr(sys, "argv", argv[1:])
            runpy.run_path(str(ROOT / argv[1]), run_name="__main__")
            code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    assert code in (0, None), f"{shlex.join(argv)} failed ({code}):\n{out[-2000:]}\n{err[-3000:]}"
    return out


def run_in_subprocess(argv: list[str], root: Path, env: dict) -> str:
    """Runs the command in its own process, as a shell would, from this checkout; returns its stdout."""
    program, *rest = argv
    if program == "python":
        argv = [sys.executable, str(ROOT / rest[0]), *rest[1:]]
    elif program == "bash":
        argv = ["bash", str(ROOT / rest[0]), *rest[1:]]
    elif program.startswith("vaswani-"):
        argv = [sys.executable, "-m", f"vaswani_hf.cli.{program.removeprefix('vaswani-').replace('-', '_')}", *rest]
    else:
        assert rest[:2] == ["launch", "--config_file"], argv
        # The shipped config, from this checkout; port 0 lets the system pick a free one.
        argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / rest[2])]
        argv += ["--main_process_port", "0", *rest[3:]]
    # The main job's script reuses the active virtual environment: the one running this suite.
    env = {**os.environ, **env, "VIRTUAL_ENV": sys.prefix, "PYTHONPATH": str(ROOT)}
    process = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, f"{shlex.join(argv)} failed:\n{process.stdout[-2000:]}\n{process.stderr[-3000:]}"
    return process.stdout


VARIABLE = re.compile(r"([A-Z]+)=(.*)")


def assignment(command: str) -> re.Match | None:
    """`NAME=VALUE` alone on its line: a shell variable that the next commands use."""
    tokens = shlex.split(command)
    return VARIABLE.fullmatch(tokens[0]) if len(tokens) == 1 else None


def run_commands(slow: bool, root: Path, corpus: Path, monkeypatch, capsys) -> list[str]:
    """Runs, in the pages' order, every command whose entry is a `Run` of this speed; returns them."""
    environment = prepare_scratch(root, corpus, with_run=not slow)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(root)
    variables: dict[str, str] = {}
    ran = []
    for command in documented():
        how = COMMANDS[command]
        if variable := assignment(command):
            variables[variable[1]] = variable[2]
            continue
        if not isinstance(how, Run) or how.slow != slow:
            continue
        argv, env, stdin = argv_of(command, how, root, variables)
        if slow:
            run_in_subprocess(argv, root, {**environment, **env})
        else:
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            run_in_process(argv, stdin, monkeypatch, capsys)
        ran.append(command)
    return ran


def runs_of(slow: bool) -> list[str]:
    return [c for c, how in COMMANDS.items() if isinstance(how, Run) and how.slow == slow and not assignment(c)]


@pytest.mark.usefixtures("one_thread", "fake_corpus_fetch")
def test_the_quick_commands_run_as_written(corpus, tmp_path, monkeypatch, capsys):
    pytest.importorskip("ctranslate2")
    pytest.importorskip("matplotlib")
    assert sorted(run_commands(False, tmp_path, corpus, monkeypatch, capsys)) == sorted(runs_of(slow=False))
    # What the commands were asked to write is there.
    for path in (
        "eval-bf16/scores.json", "results/scores.json", "results/help/scores.json", "outputs/main-job/ctranslate2",
        "outputs/main-job/ct2-int8", "tmp/main-job-upload/model.safetensors", "model_cards/main-job/README.md",
        "runs/base/model/README.md", "attention", "outputs/main-job/model-avg5/model.safetensors", "ft", "test.hyp.de",
        "docs/benchmarks/streaming-cpu.json",
    ):  # fmt: skip
        assert (tmp_path / path).exists(), path


@pytest.mark.slow
@pytest.mark.usefixtures("fake_corpus_fetch")
def test_the_commands_that_train_or_measure_run_with_tiny_settings(corpus, tmp_path, monkeypatch, capsys):
    pytest.importorskip("ctranslate2")
    assert sorted(run_commands(True, tmp_path, corpus, monkeypatch, capsys)) == sorted(runs_of(slow=True))
    for path in (
        "runs/base/model/model.safetensors", "runs/my-run/model/model.safetensors",
        "runs/two-processes/model/model.safetensors", "outputs/main-job-postnorm/results.json",
        "outputs/main-job-sh/results.json", "docs/benchmarks/translation-cpu.json", "docs/benchmarks/cpu-headline.json",
        "outputs/recurrence-study/study.json", "docs/benchmarks/translation-memory-cpu.json",
    ):  # fmt: skip
        assert (tmp_path / path).exists(), path
