"""Why attention replaced recurrence, measured on this machine: the Transformer of the small-cpu preset against the
recurrent encoder-decoder of the rnn-cpu preset with attention and without attention (about the same parameter count),
each trained on the built-in corpus with the same tokenizer and minutes of updates, the recurrent models by recipes of
their own chosen on the validation split.

    vaswani-study-recurrence                               # about two hours on a 2-core CPU
    vaswani-study-recurrence --minutes 5 --search-minutes 1 --output-dir outputs/recurrence-quick

First a recipe search: each candidate recipe of each recurrent model trains for --search-minutes and the lowest
validation loss wins (every candidate's scores are recorded). Then, for each model: validation loss and test BLEU/chrF
of every checkpoint against updates and minutes; training tokens/s and the time of one forward and backward as
sentences grow, beside the sequential operations per layer; the gradient norm by distance at initialisation and after
training, and every update's gradient norm in short runs with and without clipping; test BLEU and chrF by source
length; a generated symbol-sequence task with test lengths never seen in training; the attention alignments of one
sentence; and a verdict on each claim. Writes study.json, study.md (the tables of docs/studies.md) and the figures to
--output-dir. A stopped study continues where it stopped when started again with the same settings, and started again
with a longer --minutes its trainings train on from their last checkpoints; a folder holding a study with other
settings is refused. Run it alone on the machine: the budgets are minutes.
--replot draws the figures and study.md again from --output-dir's study.json, without training or measuring anything.
"""

import argparse
import dataclasses
import json
from pathlib import Path

from vaswani_hf.errors import user_errors
from vaswani_hf.files import write_atomic
from vaswani_hf.studies.length_task import LengthTaskSettings
from vaswani_hf.studies.recurrence import MODELS, StudySettings, plot_study, render_markdown, run_study


def parse_args(argv=None) -> StudySettings:
    """The study's settings from the command line."""
    return _parse(argv)[0]


def _parse(argv=None) -> tuple[StudySettings, bool]:
    """The settings, and whether to only draw the figures again (--replot)."""
    defaults = StudySettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=defaults.output_dir, help=f"(default: {defaults.output_dir})")
    parser.add_argument(
        "--minutes", type=float, default=defaults.minutes,
        help=f"minutes of update time per model, the same for each (default: {defaults.minutes:g})",
    )  # fmt: skip
    parser.add_argument("--processes", type=int, default=defaults.processes, help="training processes (default: 2)")
    parser.add_argument(
        "--checkpoint-minutes", type=float, default=defaults.checkpoint_minutes,
        help=f"minutes between checkpoints, the points of the curves (default: {defaults.checkpoint_minutes:g})",
    )  # fmt: skip
    parser.add_argument("--corpus", default=defaults.corpus, help="training corpus (default: the built-in one)")
    parser.add_argument("--test", help="test set for another corpus (any form load_parallel reads)")
    parser.add_argument("--src-lang", default=defaults.src_lang)
    parser.add_argument("--tgt-lang", default=defaults.tgt_lang)
    parser.add_argument(
        "--curve-sentences", type=int, default=defaults.curve_sentences,
        help=f"test sentences translated at every checkpoint (default: {defaults.curve_sentences})",
    )  # fmt: skip
    parser.add_argument(
        "--gradient-sentences", type=int, default=defaults.gradient_sentences,
        help=f"test pairs the gradient norms average over (default: {defaults.gradient_sentences})",
    )  # fmt: skip
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=list(defaults.lengths),
        help="sentence lengths of the timing (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--timing-batch-size", type=int, default=defaults.timing_batch_size)
    for name in MODELS:
        parser.add_argument(
            f"--{name.replace('_', '-')}-config", default=defaults.configs[name],
            help=f"run config (preset or YAML) of {name} (default: {defaults.configs[name]})",
        )  # fmt: skip
    parser.add_argument(
        "--search-minutes", type=float, default=defaults.search_minutes,
        help=f"minutes of updates of each candidate recipe in the search (default: {defaults.search_minutes:g})",
    )  # fmt: skip
    parser.add_argument(
        "--search-sentences", type=int, default=defaults.search_sentences,
        help=f"validation sentences each candidate translates (default: {defaults.search_sentences})",
    )  # fmt: skip
    parser.add_argument(
        "--bucket-sentences", type=int, default=defaults.bucket_sentences,
        help=f"fewest test sentences in a source-length bucket (default: {defaults.bucket_sentences})",
    )  # fmt: skip
    parser.add_argument(
        "--gradient-updates", type=int, default=defaults.gradient_updates,
        help=f"updates of the runs that record every gradient norm (default: {defaults.gradient_updates})",
    )  # fmt: skip
    task = defaults.length_task
    parser.add_argument("--length-task", choices=("reverse", "copy"), default=task.task, help="(default: %(default)s)")
    parser.add_argument(
        "--length-minutes", type=float, default=task.minutes,
        help=f"minutes of updates per model on the length task (default: {task.minutes:g})",
    )  # fmt: skip
    parser.add_argument("--replot", action="store_true", help="only draw the figures again from study.json")
    parser.add_argument("overrides", nargs="*", help="run-config overrides for every model (section.key=value)")
    # Options and section.key=value overrides in any order: `... output_dir=x --resume train.max_minutes=30`.
    args = parser.parse_intermixed_args(argv)
    for name in ("minutes", "checkpoint_minutes", "search_minutes", "length_minutes"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    for name in (
        "processes", "curve_sentences", "gradient_sentences", "timing_batch_size", "search_sentences",
        "bucket_sentences", "gradient_updates",
    ):  # fmt: skip
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.corpus != "default" and args.test is None:
        parser.error("--corpus other than the built-in one needs --test")
    configs = {name: getattr(args, f"{name}_config") for name in MODELS}
    fixed = {"configs", "overrides", "lengths", "example", "search", "length_task"}
    fields = {f.name for f in dataclasses.fields(StudySettings)} - fixed
    settings = StudySettings(
        **{name: getattr(args, name) for name in fields},
        lengths=tuple(args.lengths),
        configs=configs,
        overrides=tuple(args.overrides),
        length_task=LengthTaskSettings(task=args.length_task, minutes=args.length_minutes),
    )
    return settings, args.replot


@user_errors
def main(argv=None) -> int:
    settings, replot = _parse(argv)
    if replot:
        out = Path(settings.output_dir)
        if not (out / "study.json").is_file():
            raise SystemExit(f"error: {out / 'study.json'} does not exist: run the study first")
        report = json.loads((out / "study.json").read_text())
        write_atomic(out / "study.md", render_markdown(report))
        for path in [out / "study.md", *plot_study(report, out)]:
            print(f"wrote {path}")
        return 0
    run_study(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
