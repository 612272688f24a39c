"""Why attention replaced recurrence, measured: the Transformer against the recurrent encoder-decoder with and without
attention, trained on the same corpus with the same tokenizer and the same minutes of updates, each by a recipe of its
own.

`run_study` trains each model with `vaswani-train` in processes of its own (as the main job does), then measures:

0. recipes: the recurrent models' recipes are chosen by a small search on the validation split (`SEARCH`: every
   candidate trains for `search_minutes`, the lowest validation loss wins), recorded with every candidate's scores;
1. training steps and time: validation loss and test BLEU/chrF of every kept checkpoint against updates and minutes;
2. parallelism: training target tokens/s, and the time of one forward and backward as sentences grow, beside the
   sequential operations per layer (`vaswani_hf.analysis.sequence_measures.step_seconds`);
3. gradient flow: the gradient norm of the loss at a target position with respect to each source embedding, by
   distance, at initialisation and after training (`gradient_by_distance`); and the gradient norm of every update of
   a short run from initialisation with and without clipping (`studies.gradient_norms`);
4. long-range dependencies: test BLEU and chrF by source length, in buckets of at least `bucket_sentences`;
5. the fixed-vector bottleneck: a symbol-sequence task generated in code, with test lengths beyond the training
   lengths (`studies.length_task`), sequence and token accuracy by length for the three models;
6. what attention looks at: the alignment of the recurrent model's attention beside the Transformer's last
   encoder-decoder attention layer, for the same sentence;
7. a verdict on every claim (`verdicts`): supported, not supported or mixed, by rules written down in code.

Everything goes to `study.json` (with its provenance), `study.md` (the tables of docs/studies.md, `render_markdown`)
and PNG figures in the output folder. A run that was stopped continues where it stopped: finished trainings are kept,
a stopped one resumes from its last checkpoint; with a longer `minutes`, every training trains on from its last
checkpoint. A folder that holds a study with other settings is refused.
"""

from __future__ import annotations

import json
import math
import os
import statistics
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
from ..training.validation import validation_loss
from .gradient_norms import gradient_norm_run
from .length_task import LengthTaskSettings, plot_length_task, run_length_task

# name -> (run config preset or YAML, overrides, label). The two recurrent models differ only in attention; their
# recipes (schedule, batch, attention form) come from the search below. The Transformer keeps the updates that
# rnn-cpu.yaml shares (4000 target tokens, 200 warm-up updates): the small-cpu recipe before its updates were re-tuned
# for the main job's faster Transformer step.
MODELS = {
    "transformer": ("small-cpu", ("train.update_tokens=4000", "train.warmup_steps=200"), "Transformer"),
    "rnn_attention": ("rnn-cpu", (), "GRU + attention"),
    "rnn_no_attention": ("rnn-cpu", ("model.attention=none",), "GRU, no attention"),
}
# Adam at a fixed rate after a short warm-up, as recurrent translation models were trained (Bahdanau et al. with
# Adadelta, Luong et al. with SGD at a fixed rate; the PyTorch seq2seq tutorials with Adam at 1e-3).
ADAM = ("train.schedule=constant", "train.learning_rate=0.001", "train.warmup_steps=100")
# The candidate recipes of each recurrent model, tried on the validation split before its main training. The first
# is rnn-cpu.yaml as it is: the Transformer's recipe (Eq. 3), which the earlier study gave every model.
SEARCH: dict[str, dict[str, tuple[str, ...]]] = {
    "rnn_attention": {
        "eq3": (),
        "adam": ADAM,
        # Luong et al.'s "general" attention without input feeding: the decoder GRU runs over the whole target in
        # one call instead of a Python loop over positions, so more updates fit in the same minutes.
        "adam-luong": (*ADAM, "model.attention=general"),
    },
    "rnn_no_attention": {
        "eq3": (),
        "adam": ADAM,
        # Twice as many updates of half the tokens in the same minutes.
        "adam-small-updates": (*ADAM, "train.update_tokens=2000"),
    },
}
EXAMPLE = "Click the Save button to save the document."


def _default_length_task() -> LengthTaskSettings:
    return LengthTaskSettings()


@dataclass
class StudySettings:
    """What `run_study` trains and measures. The defaults fit about two hours on a 2-core CPU."""

    output_dir: str = "outputs/recurrence-study"
    # Minutes of update time per model (validation and checkpointing not counted): the same for every model.
    minutes: float = 40.0
    processes: int = min(2, os.cpu_count() or 1)
    checkpoint_minutes: float = 2.0
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
    # The recipe search: candidates per recurrent model, minutes of updates each, validation sentences translated.
    search: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=lambda: dict(SEARCH))
    search_minutes: float = 3.0
    search_sentences: int = 200
    # Source-length buckets of the test BLEU hold at least this many sentences (smaller ones are merged).
    bucket_sentences: int = 100
    # Updates of the runs that record every update's gradient norm, with and without clipping.
    gradient_updates: int = 50
    length_task: LengthTaskSettings = field(default_factory=_default_length_task)


# Settings that change what is measured without changing a training: a folder may be continued with other values.
MEASUREMENT_ONLY = ("output_dir", "curve_sentences", "gradient_sentences", "lengths", "timing_batch_size", "example")


def _log(message: str) -> None:
    print(message, flush=True)


def check_settings(settings: StudySettings) -> list[float]:
    """Refuses a folder that holds a study started with other training settings: its finished trainings would be
    reused as if they were this study's. A longer `minutes` is the one change allowed: every schedule here depends on
    the update, not on the budget, so the trainings continue from their last checkpoints as a longer run would have
    gone on. Writes the settings, with the shorter budgets the folder was trained to before (`earlier_minutes`), and
    returns those budgets."""
    out = Path(settings.output_dir)
    record = out / "study-settings.json"
    mine = json.loads(json.dumps({k: v for k, v in asdict(settings).items() if k not in MEASUREMENT_ONLY}))
    if record.is_file():
        theirs = json.loads(record.read_text())
        earlier = theirs.pop("earlier_minutes", [])
        changed = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if changed == ["minutes"] and mine["minutes"] > theirs["minutes"]:
            earlier = [*earlier, theirs["minutes"]]
            write_atomic(record, json.dumps({**mine, "earlier_minutes": earlier}, indent=2) + "\n")
        elif changed:
            details = "; ".join(f"{k}: {theirs.get(k)!r} then, {mine.get(k)!r} now" for k in changed)
            raise ValueError(
                f"{out} holds a recurrence study started with other settings ({details}). Its trainings would be "
                f"reused as this study's (only a longer --minutes continues them): choose another --output-dir, or "
                f"delete {out} to start again."
            )
        return earlier
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and holds no study-settings.json: it is not a recurrence study of this version. "
            "Choose another --output-dir, or empty the folder."
        )
    write_atomic(record, json.dumps(mine, indent=2) + "\n")
    return []


def _train(settings: StudySettings, folder: Path, name: str, tokenizer_dir: Path | None, extra=(), minutes=None):
    """Trains one model into `folder` (or continues or keeps its run) and returns the folder."""
    run = RunDir(folder)
    minutes = minutes or settings.minutes
    if run.is_finished():
        # A run trained to a shorter budget (a study continued with a longer --minutes) trains on from its last
        # checkpoint; one trained to this budget, or to a budget of updates, is kept.
        budget = RunConfig.load(run.run_config).train.max_minutes
        if budget is None or budget >= minutes:
            _log(f"   {run.root} holds a finished run; kept")
            return run.root
        _log(f"   {run.root} holds a run of {budget:g} minutes; it trains on to {minutes:g}")
    arguments = [
        "--config", settings.configs[name], *run.train_arguments(),
        f"train.max_minutes={minutes}",
        f"checkpoint.every_minutes={min(settings.checkpoint_minutes, minutes)}", "checkpoint.keep=1000",
        f"data.corpus={settings.corpus}", f"data.src_lang={settings.src_lang}", f"data.tgt_lang={settings.tgt_lang}",
        *([f"data.tokenizer={tokenizer_dir}"] if tokenizer_dir is not None else []),
        *MODELS[name][1], *extra, *settings.overrides,
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


def _splits(run_dir: Path, tokenizer):
    """A run's data as `vaswani-train` prepared it from its run config: (tokenized training split, tokenized
    validation split or None, validation pairs as (sources, references) or None)."""
    data = RunConfig.load(RunDir(run_dir).run_config).data
    corpus, _ = prepare_corpus(data)  # from the cache the run prepared

    def tokenized(split):
        return tokenize_pairs(
            corpus[split], tokenizer, src_lang=data.src_lang, tgt_lang=data.tgt_lang, max_length=data.max_length
        )[0]

    if "validation" not in corpus:
        return tokenized("train"), None, None
    pairs = corpus["validation"]["translation"]
    texts = ([p[data.src_lang] for p in pairs], [p[data.tgt_lang] for p in pairs])
    return tokenized("train"), tokenized("validation"), texts


def _validation_nll(model, valid_set) -> float:
    from accelerate import Accelerator

    return validation_loss(
        model, valid_set, max_tokens=2048, pad_token_id=model.config.pad_token_id,
        accelerator=Accelerator(cpu=True), label_smoothing=0.0,
    )["valid/nll"]  # fmt: skip


def _log_point(point: dict) -> None:
    _log(f"   {point['minutes']:5.1f} min  update {point['updates']:5d}  " + "  ".join(
        f"{k} {point[k]:.2f}" for k in ("validation_loss", "bleu", "chrf") if k in point
    ))  # fmt: skip


def search_recipe(settings: StudySettings, name: str, tokenizer_dir: Path, tokenizer) -> dict:
    """Trains every candidate recipe of `name` for `search_minutes` and scores its final model on the validation split
    (never the test set): validation cross-entropy, and BLEU/chrF of the first `search_sentences` validation
    sentences. The lowest validation loss wins. Scores are kept beside each run, so a continued study does not
    measure them again."""
    from transformers import AutoModelForSeq2SeqLM

    candidates = settings.search[name]
    results = {}
    for candidate, overrides in candidates.items():
        folder = Path(settings.output_dir) / "search" / name / candidate
        record = folder / "search_result.json"
        if not record.is_file():
            _log(f"-- search {name}: {candidate} ({' '.join(overrides) or 'rnn-cpu as it is'})")
            _train(settings, folder, name, tokenizer_dir, overrides, minutes=settings.search_minutes)
            run = RunDir(folder)
            summary = run.read_json(run.train_summary)
            model = AutoModelForSeq2SeqLM.from_pretrained(run.model)
            _, valid_set, valid_texts = _splits(folder, tokenizer)
            if valid_set is None:
                raise ValueError(
                    f"the recipe search needs a validation split and {settings.corpus} has none: add data.validation=PATH "
                    "to the overrides"
                )
            sources, references = (texts[: settings.search_sentences] for texts in valid_texts)
            scores = score(translate(model, tokenizer, sources), references)
            result = {
                "overrides": list(overrides),
                "parameters": sum(p.numel() for p in model.parameters()),
                "updates": summary["updates"],
                "minutes": summary["train_minutes"],
                "validation_loss": _validation_nll(model, valid_set),
                "validation_bleu": scores["bleu"],
                "validation_chrf": scores["chrf"],
            }
            write_atomic(record, json.dumps(result, indent=2) + "\n")
        results[candidate] = json.loads(record.read_text())
        r = results[candidate]
        _log(f"   {candidate}: {r['updates']} updates, validation loss {r['validation_loss']:.3f}, "
             f"BLEU {r['validation_bleu']:.2f}")  # fmt: skip
    ranked = sorted(results, key=lambda c: results[c]["validation_loss"])
    chosen = ranked[0]
    why = f"the lowest validation loss after {settings.search_minutes:g} minutes: {results[chosen]['validation_loss']:.3f}"
    if len(ranked) > 1:
        why += f", against {results[ranked[1]]['validation_loss']:.3f} for {ranked[1]}, the next best"
    return {"minutes": settings.search_minutes, "candidates": results, "chosen": chosen, "why": why}


def _finite_or_none(values):
    return [v if v is not None and math.isfinite(v) else None for v in values]


def _gradient_norms(settings: StudySettings, run_dir: Path, config, train_set) -> dict:
    """The per-update gradient norms of short runs from initialisation by the model's recipe: clipped as the recipe
    clips (where it does) and without clipping."""
    from transformers import AutoModelForSeq2SeqLM

    train_args = RunConfig.load(RunDir(run_dir).run_config).train
    runs = {}
    for label, clip in (("recipe", train_args.clip_norm), ("unclipped", None)):
        if label == "unclipped" and train_args.clip_norm is None:
            runs[label] = runs["recipe"]  # the recipe does not clip: one run is both
            continue
        torch.manual_seed(train_args.seed)
        model = AutoModelForSeq2SeqLM.from_config(config)
        result = gradient_norm_run(
            model, train_set, train_args, pad_token_id=config.pad_token_id, d_model=config.hidden_size,
            clip_norm=clip, updates=settings.gradient_updates, seed=train_args.seed,
        )  # fmt: skip
        result["norms"], result["losses"] = _finite_or_none(result["norms"]), _finite_or_none(result["losses"])
        runs[label] = result
        _log(f"   {label}: median {result['norm_median']}, p99 {result['norm_p99']}, max {result['norm_max']}, "
             f"non-finite {result['non_finite_updates']}, norm spikes {len(result['norm_spikes'])}")  # fmt: skip
    return runs


def run_study(settings: StudySettings) -> dict:
    """Trains the models of `MODELS` and measures them (see the module docstring); returns the report, which is also
    written to `study.json` beside `study.md` and the figures."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    out = Path(settings.output_dir)
    earlier_minutes = check_settings(settings)
    started = time.monotonic()
    report: dict = {"settings": asdict(settings), "provenance": provenance(), "search": {}, "models": {}}
    # The trainings of a study continued with a longer --minutes began in runs to these budgets.
    report["earlier_minutes"] = earlier_minutes

    _log(f"== 1. Training: {len(MODELS)} models, {settings.minutes:g} minutes of updates each")
    runs, tokenizer_dir, tokenizer = {}, None, None
    for name in MODELS:
        extra = ()
        if settings.search.get(name):
            _log(f"== 0. {name}: recipe search, {len(settings.search[name])} candidates")
            report["search"][name] = search_recipe(settings, name, tokenizer_dir, tokenizer)
            chosen = report["search"][name]["chosen"]
            extra = settings.search[name][chosen]
            _log(f"   chosen: {chosen} ({report['search'][name]['why']})")
        _log(f"-- {name} ({settings.configs[name]} {' '.join((*MODELS[name][1], *extra))})")
        runs[name] = _train(settings, out / name, name, tokenizer_dir, extra)
        # Every model after the first reads the first one's tokenizer: one BPE for all.
        if tokenizer_dir is None:
            tokenizer_dir = RunDir(runs[name]).tokenizer
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    sources, references = _test_pairs(settings)
    curve_sources, curve_references = sources[: settings.curve_sentences], references[: settings.curve_sentences]
    configs = {}
    for name, run_dir in runs.items():
        run = RunDir(run_dir)
        summary = run.read_json(run.train_summary)
        config = configs[name] = AutoConfig.from_pretrained(run.model_config)
        model = AutoModelForSeq2SeqLM.from_pretrained(run.model)
        run_config = RunConfig.load(run.run_config)
        entry = {
            "label": MODELS[name][2],
            "model_type": config.model_type,
            "attention": getattr(config, "attention", "multi-head"),
            "parameters": sum(p.numel() for p in model.parameters()),
            "recipe": {
                key: getattr(run_config.train, key)
                for key in ("schedule", "learning_rate", "lr_scale", "warmup_steps", "update_tokens", "clip_norm")
            },
            "train": summary,
            "train_target_tokens_per_s": summary["target_tokens"] / (summary["train_minutes"] * 60),
        }
        report["models"][name] = entry
        train_set, valid_set, _ = _splits(run_dir, tokenizer)

        _log(f"== 2. {name}: validation loss and BLEU of each checkpoint ({len(curve_sources)} test sentences)")
        entry["curve"] = learning_curve(
            run, tokenizer, curve_sources, curve_references, valid_set=valid_set, on_point=_log_point
        )

        _log(f"== 3. {name}: the averaged model on the whole test set ({len(sources)} sentences)")
        t = time.monotonic()
        hypotheses = translate(model, tokenizer, sources)
        entry["test"] = {k: v for k, v in score(hypotheses, references).items() if k != "bleu_details"}
        entry["test"]["seconds"] = time.monotonic() - t
        entry["bleu_by_length"] = bleu_by_length(
            sources, hypotheses, references, tokenizer, min_sentences=settings.bucket_sentences
        )
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
        _log(
            f"== 6. {name}: gradient norm of every update, {settings.gradient_updates} updates with and without clipping"
        )
        entry["gradient_norms"] = _gradient_norms(settings, run_dir, config, train_set)

    _log("== 7. The length task: sequence and token accuracy by length")
    clips = {name: RunConfig.load(RunDir(runs[name]).run_config).train.clip_norm for name in runs}
    report["length_task"] = run_length_task(
        {name: (configs[name], clips[name]) for name in runs}, settings.length_task, log=_log
    )

    _log("== 8. What attention looks at")
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

    report["verdicts"] = verdicts(report)
    report["wall_minutes"] = (time.monotonic() - started) / 60
    write_atomic(out / "study.json", json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    write_atomic(out / "study.md", render_markdown(report))
    plot_study(report, out)
    _log(f"== Wrote {out / 'study.json'}, study.md and the figures ({report['wall_minutes']:.1f} min)")
    return report


# ---------------------------------------------------------------------------------------------------------------------
# Verdicts: each claim against recurrence, judged by a rule written down here, from study.json alone
# ---------------------------------------------------------------------------------------------------------------------
RECURRENT = ("rnn_attention", "rnn_no_attention")
# The distance at which the gradient's decline is read (positions), where every model's test pairs still reach.
GRADIENT_DISTANCE = 20
# The length task's attention gain (token accuracy, 0-1) from which attention counts as removing the bottleneck.
BOTTLENECK_GAIN = 0.10


def _verdict(supported: bool, refuted: bool) -> str:
    return "supported" if supported else "not supported" if refuted else "mixed"


def _first_reaching(curve: list[dict], loss: float) -> dict | None:
    return next((p for p in curve if p.get("validation_loss", math.inf) <= loss), None)


def _decline(flow: dict, distance: int) -> float:
    """How many times weaker the gradient is at `distance` than at distance 0."""
    norms = dict(zip(flow["distance"], flow["mean_norm"], strict=True))
    return norms[0] / norms[distance]


def _bucket_ratio(buckets: list[dict]) -> float:
    """BLEU of the longest sentences over BLEU of the shortest (1.0: length costs nothing)."""
    return buckets[-1]["bleu"] / buckets[0]["bleu"] if buckets[0]["bleu"] > 0 else math.nan


def _explodes(run: dict) -> bool:
    return run["non_finite_updates"] > 0 or bool(run["norm_spikes"])


def verdicts(report: dict) -> list[dict]:
    """A verdict on each claim against recurrence (the paper's §1 and §4, and the seeds it cites): `claim`, `verdict`
    (supported / not supported / mixed), `evidence` (the numbers it rests on) and `figure`. The rules:

    - many training steps: the Transformer reaches the validation loss the better recurrent model ends at, in fewer
      updates and fewer minutes (supported), in neither (not supported), or in one of the two (mixed);
    - no parallelism across positions: the Transformer trains more target tokens/s than each recurrent model and its
      forward + backward time grows less from the shortest to the longest timed length (supported), neither holds
      against either model (not supported), else mixed;
    - vanishing gradients: at initialisation, the gradient without attention declines from distance 0 to
      `GRADIENT_DISTANCE` at least twice as much (in ratio) as the Transformer's and the attention model's
      (supported), no more than the Transformer's (not supported), else mixed;
    - exploding gradients: without clipping, a recurrent model's run has a non-finite update or a gradient-norm spike
      (`gradient_norms.norm_statistics`) and the Transformer's has none (supported), no recurrent run has one (not
      supported), both have (mixed);
    - lost long-range dependencies: the ratio of BLEU on the longest to the shortest source-length bucket is lower
      without attention than with attention and than the Transformer's (supported), higher than both (not supported),
      else mixed;
    - the fixed-vector bottleneck that attention removes: on the length task, attention raises the token accuracy of
      the longer half of the training lengths by at least `BOTTLENECK_GAIN` (supported), not at all (not supported),
      else mixed.
    """
    models = report["models"]
    t, a, n = (models[name] for name in ("transformer", *RECURRENT))
    found = []

    finals = {name: models[name]["curve"][-1]["validation_loss"] for name in RECURRENT}
    best = min(finals, key=finals.get)
    target = finals[best]
    mine, theirs = _first_reaching(t["curve"], target), _first_reaching(models[best]["curve"], target)
    if mine is None:
        evidence = (
            f"The Transformer never reached {target:.2f}, the final validation loss of the {models[best]['label']}."
        )
        verdict = "not supported"
    else:
        evidence = (
            f"Validation loss {target:.2f}, where the {models[best]['label']} ended: the Transformer reached it after "
            f"{mine['updates']} updates and {mine['minutes']:.1f} minutes, the {models[best]['label']} after "
            f"{theirs['updates']} updates and {theirs['minutes']:.1f} minutes."
        )
        fewer_updates, fewer_minutes = mine["updates"] < theirs["updates"], mine["minutes"] < theirs["minutes"]
        verdict = _verdict(fewer_updates and fewer_minutes, not fewer_updates and not fewer_minutes)
    found.append({"claim": "Recurrent models need many more training steps", "verdict": verdict,
                  "evidence": evidence, "figure": "curves.png"})  # fmt: skip

    def growth(entry):
        timing = entry["step_seconds"]
        return timing[-1]["seconds"] / timing[0]["seconds"]

    lengths = (t["step_seconds"][0]["length"], t["step_seconds"][-1]["length"])
    faster = [t["train_target_tokens_per_s"] > m["train_target_tokens_per_s"] for m in (a, n)]
    flatter = [growth(t) < growth(m) for m in (a, n)]
    found.append({
        "claim": "Recurrence cannot compute the positions of a sentence in parallel",
        "verdict": _verdict(all(faster) and all(flatter), not any(faster) and not any(flatter)),
        "evidence": (
            "Training target tokens/s: " + ", ".join(
                f"{m['label']} {m['train_target_tokens_per_s']:,.0f}" for m in (t, a, n)
            ) + f". Forward + backward from {lengths[0]} to {lengths[1]} tokens grows " + ", ".join(
                f"{growth(m):.1f}-fold ({m['label']})" for m in (t, a, n)
            ) + "."
        ),
        "figure": "parallelism.png",
    })  # fmt: skip

    flows = [m["gradient_by_distance"]["initialisation"] for m in (t, a, n)]
    distance = min(GRADIENT_DISTANCE, *(max(f["distance"]) for f in flows))
    d_t, d_a, d_n = (_decline(f, distance) for f in flows)
    found.append({
        "claim": "Gradients vanish over distance through recurrence",
        "verdict": _verdict(d_n >= 2 * d_t and d_n >= 2 * d_a, d_n <= d_t),
        "evidence": (
            f"At initialisation the gradient falls from distance 0 to {distance} by {d_n:.1f}x without attention, "
            f"{d_a:.1f}x with attention and {d_t:.1f}x in the Transformer."
        ),
        "figure": "gradient_flow.png",
    })  # fmt: skip

    unclipped = {name: models[name]["gradient_norms"]["unclipped"] for name in models}
    recurrent_explode = any(_explodes(unclipped[name]) for name in RECURRENT)
    found.append({
        "claim": "Gradients explode in recurrent models without clipping",
        "verdict": _verdict(recurrent_explode and not _explodes(unclipped["transformer"]), not recurrent_explode),
        "evidence": " ".join(
            f"{models[name]['label']} unclipped: median norm {run['norm_median']}, maximum {run['norm_max']}, "
            f"{run['non_finite_updates']} non-finite updates, {len(run['norm_spikes'])} norm spikes in "
            f"{run['updates']} updates."
            for name, run in unclipped.items()
        ),
        "figure": "gradient_norms.png",
    })  # fmt: skip

    r_t, r_a, r_n = (_bucket_ratio(m["bleu_by_length"]) for m in (t, a, n))
    first, last = t["bleu_by_length"][0]["bucket"], t["bleu_by_length"][-1]["bucket"]
    found.append({
        "claim": "Recurrent models lose long-range dependencies (long sentences)",
        "verdict": _verdict(r_n < r_a and r_n < r_t, r_n >= r_a and r_n >= r_t),
        "evidence": (
            f"BLEU on sources of {last} tokens as a share of BLEU on {first} tokens: " + ", ".join(
                f"{ratio:.2f} ({m['label']}: {m['bleu_by_length'][-1]['bleu']:.1f} / {m['bleu_by_length'][0]['bleu']:.1f})"
                for ratio, m in ((r_t, t), (r_a, a), (r_n, n))
            ) + "."
        ),
        "figure": "length_buckets.png",
    })  # fmt: skip

    task = report["length_task"]
    longest = task["settings"]["max_train_length"]
    half = longest // 2 + 1

    def long_seen(name):
        rows = [r for r in task["models"][name]["by_length"] if half <= r["length"] <= longest]
        return statistics.fmean(r["token_accuracy"] for r in rows)

    acc = {name: long_seen(name) for name in task["models"]}
    gain = acc["rnn_attention"] - acc["rnn_no_attention"]
    found.append({
        "claim": "A fixed-size vector is a bottleneck that attention removes",
        "verdict": _verdict(gain >= BOTTLENECK_GAIN, gain <= 0),
        "evidence": (
            f"Length task ({task['settings']['task']}), token accuracy on training lengths {half}-{longest}: " + ", ".join(
                f"{models[name]['label']} {acc[name]:.2f}" for name in acc
            ) + "; on unseen lengths: " + ", ".join(
                f"{models[name]['label']} {task['models'][name]['unseen']['token_accuracy']:.2f}" for name in acc
            ) + "."
        ),
        "figure": "length_task.png",
    })  # fmt: skip
    return found


# ---------------------------------------------------------------------------------------------------------------------
# The tables of docs/studies.md, from study.json alone
# ---------------------------------------------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def render_markdown(report: dict) -> str:
    """The study's tables and verdicts as Markdown, from its report: docs/studies.md quotes it word for word (a test
    compares them), so every number on the page comes from study.json."""
    models = report["models"]
    names = list(models)
    labels = [models[name]["label"] for name in names]
    prov = report["provenance"]
    versions = prov["versions"]
    lines = [
        f"Measured with `{prov['command']}` at commit {_short_commit(prov['commit'])} on {prov['cpu']['model']} "
        f"({prov['cpu']['cores']} cores, bf16 matrix units: {prov['cpu']['bf16_matrix_units'] or 'none'}), torch "
        f"{versions['torch']}, transformers {versions['transformers']}, accelerate {versions.get('accelerate')}; "
        f"{report['settings']['minutes']:g} minutes of updates per model"
        + (
            f", continuing the trainings of a study of {', then '.join(f'{m:g}' for m in report['earlier_minutes'])} "
            "minutes (the same settings, a shorter --minutes)"
            if report.get("earlier_minutes")
            else ""
        )
        + f"; {report['wall_minutes']:.0f} minutes of wall time.",
        "",
        "**Recipe search** (validation split; the lowest validation loss wins):",
        "",
    ]
    rows = []
    for name, search in report["search"].items():
        for candidate, r in search["candidates"].items():
            rows.append([
                models[name]["label"], f"`{candidate}`" + (" (chosen)" if candidate == search["chosen"] else ""),
                " ".join(f"`{o}`" for o in r["overrides"]) or "rnn-cpu as it is (Eq. 3)", f"{r['updates']:,}",
                f"{r['validation_loss']:.3f}", f"{r['validation_bleu']:.1f}",
            ])  # fmt: skip
    lines += _table(["model", "candidate", "overrides", "updates", "validation loss", "validation BLEU"], rows)

    def recipe(m):
        r = m["recipe"]
        rate = f"Eq. 3 x {r['lr_scale']:g}" if r["schedule"] == "noam" else f"Adam {r['learning_rate']:g}"
        clip = f", clip {r['clip_norm']:g}" if r["clip_norm"] else ""
        return f"{rate}, {r['warmup_steps']} warm-up, {r['update_tokens']:,} tokens/update{clip}"

    first, last = (models[names[0]]["step_seconds"][i] for i in (0, -1))
    lines += ["", "**The three models:**", ""]
    lines += _table(
        ["", *labels],
        [
            ["parameters", *(f"{m['parameters'] / 1e6:.2f}M" for m in models.values())],
            ["attention", *(m["attention"] for m in models.values())],
            ["recipe", *(recipe(m) for m in models.values())],
            ["updates", *(f"{m['train']['updates']:,}" for m in models.values())],
            ["training target tokens/s", *(f"{m['train_target_tokens_per_s']:,.0f}" for m in models.values())],
            ["validation loss, last checkpoint", *(f"{m['curve'][-1]['validation_loss']:.2f}" for m in models.values())],
            ["test BLEU / chrF (averaged model)",
             *(f"**{m['test']['bleu']:.1f}** / {m['test']['chrf']:.1f}" for m in models.values())],
            [f"forward + backward, {first['length']} / {last['length']} tokens",
             *(f"{m['step_seconds'][0]['seconds']:.3f} s / {m['step_seconds'][-1]['seconds']:.2f} s" for m in models.values())],
            [f"sequential operations per layer at n = {last['length']}",
             *(str(m["step_seconds"][-1]["sequential_operations"]) for m in models.values())],
        ],
    )  # fmt: skip

    lines += ["", "**Test BLEU / chrF by source length** (tokens):", ""]
    buckets = [b["bucket"] for b in models[names[0]]["bleu_by_length"]]
    rows = []
    for bucket in buckets:
        cells = []
        for m in models.values():
            b = next((b for b in m["bleu_by_length"] if b["bucket"] == bucket), None)
            cells.append(f"{b['bleu']:.1f} / {b['chrf']:.1f}" if b else "")
        count = next(b["sentences"] for b in models[names[0]]["bleu_by_length"] if b["bucket"] == bucket)
        rows.append([bucket, f"{count:,}", *cells])
    lines += _table(["source tokens", "sentences", *labels], rows)

    lines += ["", "**Gradient norm of every update** from initialisation, by each recipe and without clipping:", ""]
    rows = []
    for m in models.values():
        runs = m["gradient_norms"]
        for label, run in runs.items():
            if label == "unclipped" and runs["recipe"]["clip_norm"] is None:
                continue  # the recipe does not clip: its run is the unclipped one
            clip = f"clipped at {run['clip_norm']:g}" if run["clip_norm"] else "not clipped"
            rows.append([
                m["label"], clip, run["updates"], _g(run["norm_median"]), _g(run["norm_p99"]), _g(run["norm_max"]),
                run["non_finite_updates"], len(run["norm_spikes"]), len(run["loss_spikes"]),
            ])  # fmt: skip
    lines += _table(
        ["model", "run", "updates", "median norm", "99th percentile", "maximum", "non-finite", "norm spikes",
         "loss spikes"], rows,
    )  # fmt: skip

    task = report["length_task"]
    ts = task["settings"]
    lines += [
        "",
        f"**Length task** ({ts['task']} {ts['symbols']} symbols; training lengths {ts['min_length']}-"
        f"{ts['max_train_length']}, test lengths up to {ts['max_test_length']}; accuracy of greedy outputs):",
        "",
    ]
    lines += _table(
        ["model", "updates", "sequence accuracy, seen lengths", "token accuracy, seen", "sequence accuracy, unseen",
         "token accuracy, unseen"],
        [
            [models[name]["label"], f"{r['train']['updates']:,}", f"{r['seen']['sequence_accuracy']:.2f}",
             f"{r['seen']['token_accuracy']:.2f}", f"{r['unseen']['sequence_accuracy']:.2f}",
             f"{r['unseen']['token_accuracy']:.2f}"]
            for name, r in task["models"].items()
        ],
    )  # fmt: skip

    lines += ["", "**Verdicts** (the rules are in `vaswani_hf.studies.recurrence.verdicts`):", ""]
    return "\n".join(lines) + "\n" + render_verdicts(report)


def render_verdicts(report: dict, figures: str = "figures/recurrence") -> str:
    """The verdict table alone, with links to the figures in the folder `figures` (relative to the page): the README
    quotes it from the repository's root."""
    lines = _table(
        ["claim", "verdict", "evidence", "figure"],
        [[v["claim"], f"**{v['verdict']}**", v["evidence"], f"[{v['figure']}]({figures}/{v['figure']})"]
         for v in report["verdicts"]],
    )  # fmt: skip
    return "\n".join(lines) + "\n"


def _short_commit(commit: str | None) -> str:
    if commit is None:
        return "unknown (not a checkout)"
    return commit[:12] + (" with uncommitted changes" if commit.endswith("-dirty") else "")


def _g(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


# ---------------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------------
FIGURES = (
    "curves.png", "parallelism.png", "gradient_flow.png", "gradient_norms.png", "length_buckets.png", "length_task.png",
    "attention.png",
)  # fmt: skip


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
    for index, entry in enumerate(models.values()):
        runs = entry["gradient_norms"]
        for label, style in (("recipe", "-"), ("unclipped", ":")):
            if label == "unclipped" and runs["recipe"]["clip_norm"] is None:
                continue
            norms = runs[label]["norms"]
            clip = runs[label]["clip_norm"]
            axis.plot(
                range(1, len(norms) + 1), [math.nan if v is None else v for v in norms], style, color=f"C{index}",
                label=f"{entry['label']}, " + (f"clipped at {clip:g}" if clip else "not clipped"),
            )  # fmt: skip
    axis.set(yscale="log", xlabel="update", ylabel="gradient norm before clipping")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    paths.append(save_png(figure, out_dir / "gradient_norms.png", dpi=dpi))

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

    labels = {name: entry["label"] for name, entry in models.items()}
    paths.append(plot_length_task(report["length_task"], out_dir / "length_task.png", labels=labels))

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
