"""Why attention replaced recurrence, measured: the Transformer against the recurrent encoder-decoder with and without
attention, trained on the same corpus with the same tokenizer, recipe and update-time budget.

`run_study` trains each model with `vaswani-train` in processes of its own (as the main job does), then measures:

1. training steps and time: validation loss and test BLEU/chrF of every kept checkpoint against updates and minutes;
2. parallelism: training target tokens/s, and the time of one forward and backward as sentences grow, beside the
   sequential operations per layer (`vaswani_hf.analysis.sequence_measures.step_seconds`);
3. gradient flow: the gradient norm of the loss at a target position with respect to each source embedding, by
   distance, at initialisation and after training (`gradient_by_distance`);
4. long-range dependencies: test BLEU by source length (`bleu_by_length`);
5. what attention looks at: the alignment of the recurrent model's attention beside the Transformer's last
   encoder-decoder attention layer, for the same sentence.

Everything goes to `study.json` and PNG figures in the output folder. A run that was stopped continues where it
stopped: finished trainings are kept, a stopped one resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..analysis.attention_maps import compute_attention_maps
from ..analysis.plotting import new_figure, plot_points, save_png
from ..analysis.sequence_measures import bleu_by_length, gradient_by_distance, step_seconds
from ..data.parallel import load_parallel, tokenize_pairs
from ..evaluation import score, translate
from ..files import write_atomic
from ..provenance import provenance
from ..run_dir import RunDir
from ..training.corpus import prepare_corpus
from ..training.launch import run_training
from ..training.learning_curve import learning_curve
from ..training.run_config import RunConfig

# name -> (run config preset or YAML, overrides, label). The two recurrent models differ only in attention. The
# Transformer keeps the updates that rnn-cpu.yaml shares (4000 target tokens, 200 warm-up updates), the small-cpu
# recipe before its updates were re-tuned for the main job, so that the three models train by one recipe.
MODELS = {
    "transformer": ("small-cpu", ("train.update_tokens=4000", "train.warmup_steps=200"), "Transformer"),
    "rnn_attention": ("rnn-cpu", (), "GRU + additive attention"),
    "rnn_no_attention": ("rnn-cpu", ("model.attention=none",), "GRU, no attention"),
}
EXAMPLE = "Click the Save button to save the document."


@dataclass
class StudySettings:
    """What `run_study` trains and measures. The defaults fit about 45 minutes on a 2-core CPU."""

    output_dir: str = "outputs/recurrence-study"
    # Minutes of update time per model (validation and checkpointing not counted): the same for every model.
    minutes: float = 10.0
    processes: int = min(2, os.cpu_count() or 1)
    checkpoint_minutes: float = 1.0
    # The corpus: "default" (the built-in English-German corpus, tested on its help split) or what load_parallel
    # reads, then tested on `test` (a path load_parallel reads).
    corpus: str = "default"
    test: str | None = None
    src_lang: str = "en"
    tgt_lang: str = "de"
    # Test sentences translated at every checkpoint for the curves (the final models translate the whole test set).
    curve_sentences: int = 300
    gradient_sentences: int = 40
    lengths: tuple[int, ...] = (8, 16, 32, 64, 128)
    timing_batch_size: int = 16
    # Run configs per model (name -> preset or YAML), and overrides for every model (after the study's own).
    configs: dict[str, str] = field(default_factory=lambda: {name: spec[0] for name, spec in MODELS.items()})
    overrides: tuple[str, ...] = ()
    example: str = EXAMPLE


def _log(message: str) -> None:
    print(message, flush=True)


def _train(settings: StudySettings, name: str, tokenizer_dir: Path | None) -> Path:
    """Trains one model (or continues or keeps its run) and returns its run folder."""
    run = RunDir(Path(settings.output_dir) / name)
    if run.is_finished():
        _log(f"   {run.root} holds a finished run; delete it to train again")
        return run.root
    preset_overrides = MODELS[name][1]
    arguments = [
        "--config", settings.configs[name], *run.train_arguments(), f"train.max_minutes={settings.minutes}",
        f"checkpoint.every_minutes={settings.checkpoint_minutes}", "checkpoint.keep=1000",
        f"data.corpus={settings.corpus}", f"data.src_lang={settings.src_lang}", f"data.tgt_lang={settings.tgt_lang}",
        *([f"data.tokenizer={tokenizer_dir}"] if tokenizer_dir is not None else []),
        *preset_overrides, *settings.overrides,
    ]  # fmt: skip
    run_training(settings.processes, arguments)
    return run.root


def _test_pairs(settings: StudySettings) -> tuple[list[str], list[str]]:
    if settings.test is None:
        if settings.corpus != "default":
            raise ValueError("a corpus other than the default one needs a test set: set `test`")
        from ..data.default_corpus import load_default_corpus

        pairs = load_default_corpus()["test_help"]["translation"]
    else:
        pairs = load_parallel(settings.test, src_lang=settings.src_lang, tgt_lang=settings.tgt_lang)["translation"]
    return [p[settings.src_lang] for p in pairs], [p[settings.tgt_lang] for p in pairs]


def _validation_set(run_dir: Path, tokenizer):
    """The validation split of a run, as `vaswani-train` prepared it from its run config, tokenized; None without."""
    data = RunConfig.load(RunDir(run_dir).run_config).data
    corpus, _ = prepare_corpus(data)  # the training pairs come from the cache the run prepared
    if "validation" not in corpus:
        return None
    return tokenize_pairs(corpus["validation"], tokenizer, src_lang=data.src_lang, tgt_lang=data.tgt_lang)[0]


def _log_point(point: dict) -> None:
    _log(f"   {point['minutes']:5.1f} min  update {point['updates']:5d}  " + "  ".join(
        f"{k} {point[k]:.2f}" for k in ("validation_loss", "bleu", "chrf") if k in point
    ))  # fmt: skip


def run_study(settings: StudySettings) -> dict:
    """Trains the models of `MODELS` and measures them (see the module docstring); returns the report, which is also
    written to `study.json` beside the figures."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    out = Path(settings.output_dir)
    started = time.monotonic()
    report: dict = {"settings": asdict(settings), "provenance": provenance(), "models": {}}

    _log(f"== 1. Training: {len(MODELS)} models, {settings.minutes:g} minutes of updates each")
    runs, tokenizer_dir = {}, None
    for name in MODELS:
        _log(f"-- {name} ({settings.configs[name]} {' '.join(MODELS[name][1])})")
        runs[name] = _train(settings, name, tokenizer_dir)
        # Every model after the first reads the first one's tokenizer: one BPE for all.
        tokenizer_dir = tokenizer_dir or RunDir(runs[name]).tokenizer
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    sources, references = _test_pairs(settings)
    curve_sources, curve_references = sources[: settings.curve_sentences], references[: settings.curve_sentences]
    for name, run_dir in runs.items():
        run = RunDir(run_dir)
        summary = run.read_json(run.train_summary)
        config = AutoConfig.from_pretrained(run.model_config)
        model = AutoModelForSeq2SeqLM.from_pretrained(run.model)
        entry = {
            "label": MODELS[name][2],
            "model_type": config.model_type,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train": summary,
            "train_target_tokens_per_s": summary["target_tokens"] / (summary["train_minutes"] * 60),
        }
        report["models"][name] = entry

        _log(f"== 2. {name}: validation loss and BLEU of each checkpoint ({len(curve_sources)} test sentences)")
        entry["curve"] = learning_curve(
            run,
            tokenizer,
            curve_sources,
            curve_references,
            valid_set=_validation_set(run_dir, tokenizer),
            on_point=_log_point,
        )

        _log(f"== 3. {name}: the averaged model on the whole test set ({len(sources)} sentences)")
        t = time.monotonic()
        hypotheses = translate(model, tokenizer, sources)
        entry["test"] = {k: v for k, v in score(hypotheses, references).items() if k != "bleu_details"}
        entry["test"]["seconds"] = time.monotonic() - t
        entry["bleu_by_length"] = bleu_by_length(sources, hypotheses, references, tokenizer)
        write_atomic(run_dir / "test_hypotheses.txt", "".join(h + "\n" for h in hypotheses))
        _log(f"   BLEU {entry['test']['bleu']:.2f} chrF {entry['test']['chrf']:.2f}")

        _log(f"== 4. {name}: one forward and backward against sentence length")
        torch.manual_seed(0)
        entry["step_seconds"] = step_seconds(
            AutoModelForSeq2SeqLM.from_config(config), settings.lengths, batch_size=settings.timing_batch_size
        )

        _log(f"== 5. {name}: gradient of the loss with respect to the source embeddings, by distance")
        pairs = (sources[: settings.gradient_sentences], references[: settings.gradient_sentences])
        torch.manual_seed(0)
        entry["gradient_by_distance"] = {
            "initialisation": gradient_by_distance(AutoModelForSeq2SeqLM.from_config(config), tokenizer, *pairs),
            "trained": gradient_by_distance(model, tokenizer, *pairs),
        }

    _log("== 6. What attention looks at")
    report["attention"] = {}
    for name in MODELS:
        model = AutoModelForSeq2SeqLM.from_pretrained(RunDir(runs[name]).model, attn_implementation="eager").eval()
        if getattr(model.config, "attention", None) == "none":
            continue
        (maps,) = compute_attention_maps(model, tokenizer, [settings.example])
        report["attention"][name] = {
            "source_tokens": maps.source_tokens,
            "output_tokens": maps.decoder_outputs,
            "translation": maps.translation,
            "alignment": maps.alignment().tolist(),
        }

    report["wall_minutes"] = (time.monotonic() - started) / 60
    write_atomic(out / "study.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    plot_study(report, out)
    _log(f"== Wrote {out / 'study.json'} and the figures ({report['wall_minutes']:.1f} min)")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------------
FIGURES = ("curves.png", "parallelism.png", "gradient_flow.png", "length_buckets.png", "attention.png")


def plot_study(report: dict, out_dir: str | os.PathLike, dpi: int = 110) -> list[Path]:
    """The study's figures from its report (`FIGURES`); the attention figure only when a model attends."""
    out_dir = Path(out_dir)
    models = report["models"]
    paths = []

    figure = new_figure(figsize=(10, 7))
    axes = figure.subplots(2, 2)
    for entry in models.values():
        curve = entry["curve"]
        for column, x in enumerate(("updates", "minutes")):
            if curve and "validation_loss" in curve[0]:
                plot_points(axes[0][column], curve, x, "validation_loss", label=entry["label"])
            plot_points(axes[1][column], curve, x, "bleu", label=entry["label"])
    for column, x in enumerate(("updates", "training minutes")):
        axes[0][column].set(xlabel=x, ylabel="validation loss (cross-entropy per token)")
        axes[1][column].set(xlabel=x, ylabel="test BLEU (each checkpoint)")
    for axis in axes.flat:
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    paths.append(save_png(figure, out_dir / "curves.png", dpi=dpi))

    figure = new_figure(figsize=(10, 4))
    left, right = figure.subplots(1, 2)
    for entry in models.values():
        timing = entry["step_seconds"]
        plot_points(left, timing, "length", "seconds", label=entry["label"])
        plot_points(right, timing, "length", "sequential_operations", label=entry["label"])
    left.set(
        xscale="log", yscale="log", xlabel="source and target length (tokens)", ylabel="seconds per forward + backward"
    )
    right.set(xscale="log", yscale="log", xlabel="length n", ylabel="sequential operations per layer")
    for axis in (left, right):
        axis.grid(alpha=0.3, which="both")
        axis.legend()
    figure.tight_layout()
    paths.append(save_png(figure, out_dir / "parallelism.png", dpi=dpi))

    figure = new_figure(figsize=(6, 4))
    axis = figure.subplots()
    for index, entry in enumerate(models.values()):
        color = f"C{index}"
        for when, style in (("initialisation", "--"), ("trained", "-")):
            flow = entry["gradient_by_distance"][when]
            axis.plot(flow["distance"], flow["mean_norm"], style, color=color, label=f"{entry['label']}, {when}")
    axis.set(yscale="log", xlabel="distance |t - j| (positions)", ylabel="mean |d loss_t / d x_j|")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    paths.append(save_png(figure, out_dir / "gradient_flow.png", dpi=dpi))

    figure = new_figure(figsize=(7, 4))
    axis = figure.subplots()
    buckets = [b["bucket"] for b in next(iter(models.values()))["bleu_by_length"]]
    width = 0.8 / len(models)
    for index, entry in enumerate(models.values()):
        by_bucket = {b["bucket"]: b["bleu"] for b in entry["bleu_by_length"]}
        axis.bar(
            [i + index * width for i in range(len(buckets))],
            [by_bucket.get(b, 0) for b in buckets],
            width,
            label=entry["label"],
        )
    axis.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(buckets))], buckets)
    axis.set(xlabel="source length (tokens)", ylabel="test BLEU")
    axis.grid(alpha=0.3, axis="y")
    axis.legend()
    figure.tight_layout()
    paths.append(save_png(figure, out_dir / "length_buckets.png", dpi=dpi))

    attention = report.get("attention") or {}
    if attention:
        figure = new_figure(figsize=(5 * len(attention), 4.5))
        panels = figure.subplots(1, len(attention), squeeze=False, gridspec_kw={"wspace": 0.45})[0]
        for axis, (name, maps) in zip(panels, attention.items(), strict=True):
            image = axis.imshow(maps["alignment"], vmin=0, vmax=1, cmap="viridis")
            axis.set_xticks(range(len(maps["source_tokens"])), maps["source_tokens"], rotation=90, fontsize=7)
            axis.set_yticks(range(len(maps["output_tokens"])), maps["output_tokens"], fontsize=7)
            axis.set_title(models[name]["label"], fontsize=9)
            axis.set(xlabel="source", ylabel="predicting")
        figure.colorbar(image, ax=list(panels), shrink=0.8, label="attention weight")
        paths.append(save_png(figure, out_dir / "attention.png", dpi=dpi, bbox_inches="tight"))
    return paths
