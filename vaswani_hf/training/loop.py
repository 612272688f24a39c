"""Train the Transformer from scratch with the paper's recipe (§5), on one CPU, one GPU, or many through Accelerate.

    vaswani-train --config small-cpu
    vaswani-train --config base data.corpus=data/train data.validation=data/valid output_dir=runs/base
    accelerate launch --config_file scripts/accelerate/ddp.yaml -m vaswani_hf.cli.train --config base ...
    vaswani-train --config small-cpu --resume          # continue the run in its output_dir

The recipe lives in `vaswani_hf.training`; this module is the loop, in plain view: setup → train → finish.
`vaswani-train` runs it; the studies run it with `python -m vaswani_hf.training.loop` in processes of their own
(`vaswani_hf.training.launch`).
"""

from __future__ import annotations

import argparse
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, broadcast_object_list, set_seed
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSeq2SeqLM, PretrainedConfig

from ..data.batching import collate
from ..data.parallel import tokenize_pairs
from ..data.prepared import prepare_tokens, sequence_lengths
from ..errors import user_errors
from ..files import AtomicDir, remove_partial_model_dirs, write_atomic
from ..run_dir import RunDir, RunDirError, RunLock
from .architectures import build_model_config
from .checkpoints import (
    CheckpointManager,
    TrainingState,
    checkpoint_state,
    save_averaged_model,
    store_tied_weights_once,
)
from .corpus import check_corpus_record, load_or_train_tokenizer, prepare_corpus, prepared_cache_dir
from .loss import training_loss
from .memory import keep_freed_memory
from .optim import optimizer_and_schedule
from .precision import resolve_mixed_precision
from .run_config import RunConfig, describe_settings, presets
from .updates import plan_epoch
from .validation import validate


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"run-config keys (section.key=value; the defaults before a preset):\n{describe_settings()}",
    )
    parser.add_argument(
        "--config",
        default="small-cpu",
        help=f"a preset ({', '.join(presets())}; default: small-cpu) or a YAML file",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr_scale=2.0")
    # Options and section.key=value overrides in any order: `... output_dir=x --resume train.max_minutes=30`.
    return parser.parse_intermixed_args(argv)


@user_errors
def main(argv=None) -> int:
    """Parses `argv` and runs; a user's mistake ends with its message, here as in every command, since the main job
    and the studies launch this module in processes of their own. A full disk (`SaveError`) is one of those: its
    message says what was kept and what to do."""
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Setup, train, finish; a run stopped by a signal skips the finish, a finished one does nothing."""
    session = setup(args)
    state = session.state
    if _finished(session.cfg, state) and session.run_dir.is_finished():
        session.accelerator.print(
            f"the run in {session.out} finished at update {state.step}: nothing to do (raise the budget to train on)"
        )
    elif train(session):
        finish(session)
    session.accelerator.end_training()
    if session.lock is not None:
        session.lock.release()
    return 0


@dataclass
class Run:
    """What `setup` builds for `train` and `finish`."""

    cfg: RunConfig
    run_dir: RunDir
    accelerator: Accelerator
    corpus: dict
    tokenizer: object
    train_set: object
    dropped: int
    valid_set: object
    model_config: PretrainedConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    checkpoints: CheckpointManager
    state: TrainingState
    # The run folder's lock, held by the main process for the run's life (None on the others).
    lock: RunLock | None = None
    updates_per_epoch: int = 0

    @property
    def out(self) -> Path:
        return self.run_dir.root


def choose_precision(cfg: RunConfig) -> tuple[str, str, dict | None]:
    """`resolve_mixed_precision` for the run's model width, measured once by the main process and shared with the
    others before the Accelerator is built with it: processes that measured apart could disagree."""
    state = PartialState(cpu=not torch.accelerator.is_available())
    widths = {"d_model": cfg.model.d_model or 512, "d_ff": cfg.model.d_ff or 2048}
    choice = resolve_mixed_precision(cfg.train.mixed_precision, **widths) if state.is_main_process else None
    if state.num_processes > 1:
        choice = broadcast_object_list([choice])[0]
    return choice


def setup(args: argparse.Namespace) -> Run:
    """The run config checked against a run being resumed, the processes, corpus, tokenizer and model, and the state
    of the newest checkpoint when resuming."""
    try:
        cfg = RunConfig.load(args.config, args.overrides)
    except (ValueError, FileNotFoundError) as error:
        # A setting's mistake is the user's: one line that names the key, no traceback.
        raise SystemExit(f"error: {error}") from None
    run_dir = RunDir(cfg.output_dir)
    out = run_dir.root
    precision, why, probe = choose_precision(cfg)
    accelerator = Accelerator(
        # Without an accelerator, processes started by torchrun (`accelerate launch --multi_gpu`) join over gloo.
        cpu=not torch.accelerator.is_available(),
        mixed_precision=precision,
        log_with="tensorboard",
        project_dir=str(out),
        # Eq. 3 counts optimizer updates; by default Accelerate would step the schedule once per process.
        step_scheduler_with_optimizer=False,
    )
    log = accelerator.print
    lock = None
    if accelerator.is_main_process:
        # Before anything is written: a second run into this folder is refused at once, naming the first.
        try:
            lock = run_dir.lock(log=log)
        except RunDirError as error:
            raise SystemExit(f"error: {error}") from None
    try:
        run_dir.check_start(resume=args.resume)
    except RunDirError as error:
        raise SystemExit(f"error: {error}") from None
    if args.resume and run_dir.run_config.is_file():
        conflicts = cfg.resume_conflicts(RunConfig.load(run_dir.run_config))
        if conflicts:
            changes = "; ".join(f"{key}: {old!r} then, {new!r} now" for key, (old, new) in conflicts.items())
            raise SystemExit(
                f"--resume: the run in {out} was started with other settings, which the saved position in its data "
                f"and schedule depends on ({changes}). Resume with the values it was started with (only the budget "
                "and the logging, checkpointing and validation settings may change), or start a new output_dir."
            )

    log(f"{accelerator.num_processes} process(es), {accelerator.distributed_type.value}, on {accelerator.device}")
    log(f"mixed precision: {precision} (train.mixed_precision={cfg.train.mixed_precision}: {why})")
    if accelerator.is_main_process:
        run_dir.write_json(
            run_dir.precision_record,
            {"mixed_precision": precision, "setting": cfg.train.mixed_precision, "why": why, "probe": probe},
        )
    if accelerator.device.type == "cpu":
        keep_freed_memory()
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed steps the optimizer inside backward after a fixed number of micro-batches; an update here is
        # however many length-bucketed micro-batches make up train.update_tokens.
        raise SystemExit(
            "DeepSpeed is not supported by vaswani-train: its fixed gradient-accumulation count does not fit "
            "token-budget updates. Use scripts/accelerate/fsdp.yaml (sharded) or ddp-multinode.yaml (several nodes)."
        )
    if accelerator.distributed_type == DistributedType.FSDP and accelerator.state.fsdp_plugin.fsdp_version != 2:
        # Validation decodes with the model as it is in training; FSDP1 wraps it in a module whose parameters are
        # flattened views, which `generate()` cannot run on.
        raise SystemExit(
            "FSDP version 1 is not supported by vaswani-train: set fsdp_version: 2, as in "
            "scripts/accelerate/fsdp.yaml."
        )
    set_seed(cfg.train.seed)

    # Data and tokenizer: the main process prepares what is cached (the cleaned and tokenized corpus, the BPE), the
    # others then open it memory-mapped: they add no preparation time and no memory beyond the pages they read.
    with accelerator.main_process_first():
        main_log = log if accelerator.is_main_process else None
        corpus, text = prepare_corpus(cfg.data, log=main_log)
        check_corpus_record(cfg.data, run_dir, resume=args.resume, write=accelerator.is_main_process)
        tokenizer = load_or_train_tokenizer(cfg.data, text, run_dir, resume=args.resume, log=main_log)
        train_set, dropped = prepare_tokens(
            text, tokenizer, prepared_cache_dir(), src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang,
            max_length=cfg.data.max_length, log=main_log,
        )  # fmt: skip
        valid_set = None
        if "validation" in corpus:
            valid_set, _ = tokenize_pairs(
                corpus["validation"], tokenizer, src_lang=cfg.data.src_lang, tgt_lang=cfg.data.tgt_lang,
                max_length=cfg.data.max_length,
            )  # fmt: skip
    log(f"train: {len(train_set)} pairs ({dropped} over {cfg.data.max_length} tokens dropped)")

    try:
        model_config = build_model_config(cfg.model, tokenizer)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    config_dir = run_dir.model_config
    if args.resume:
        saved = AutoConfig.from_pretrained(config_dir)
        if saved.to_diff_dict() != model_config.to_diff_dict():
            raise SystemExit(
                f"The run in {out} was trained with another model configuration ({config_dir}/config.json); resume "
                "with the run config it was started with, or start a new output_dir."
            )
    model = AutoModelForSeq2SeqLM.from_config(model_config)
    if cfg.model.attn_implementation is not None:
        model.set_attn_implementation(cfg.model.attn_implementation)
    if accelerator.is_main_process:
        if not args.resume:
            # What averaging builds the final model from, written whole. A resumed run keeps the one it has just
            # compared equal: the other processes may still be reading it.
            remove_partial_model_dirs(config_dir)  # what a kill during an earlier start's write left
            with AtomicDir(config_dir, replace=True) as folder:
                model_config.save_pretrained(folder)
        write_atomic(run_dir.run_config, cfg.to_yaml())
    shape = {k: getattr(model_config, k, None) for k in ("model_type", "vocab_size", "hidden_size", "encoder_layers")}
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {shape}")

    optimizer, scheduler = optimizer_and_schedule(model.parameters(), cfg.train, model_config.hidden_size)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    store_tied_weights_once(accelerator)
    state = TrainingState()
    checkpoints = CheckpointManager(run_dir.checkpoints, keep=cfg.checkpoint.keep)
    if args.resume:
        checkpoints.remove_partial()
        if accelerator.is_main_process:
            remove_partial_model_dirs(run_dir.model)  # what a kill during the final averaging left
        latest = checkpoints.latest_intact(accelerator.num_processes, log=log, set_aside=False)
        accelerator.wait_for_everyone()  # every process has chosen before any damaged checkpoint moves
        if accelerator.is_main_process:
            checkpoints.latest_intact(accelerator.num_processes, log=lambda message: None)
        accelerator.wait_for_everyone()
        if latest is None:
            raise SystemExit(f"error: --resume: no intact checkpoint in {checkpoints.root}; start a new output_dir.")
        accelerator.load_state(str(latest))  # model, optimizer, schedule, RNG: no pickle loaded with code
        state = TrainingState(**checkpoint_state(latest))
        log(f"resumed from {latest}: update {state.step}, epoch {state.epoch}")

    accelerator.init_trackers("train", config={k: str(v) for k, v in cfg.to_flat_dict().items()})

    return Run(
        cfg, run_dir, accelerator, corpus, tokenizer, train_set, dropped, valid_set, model_config, model, optimizer,
        scheduler, checkpoints, state, lock,
    )  # fmt: skip


def train(run: Run) -> bool:
    """Updates until the budget is spent (True) or a signal stops the run after a checkpoint (False)."""
    cfg, accelerator, state, model, train_set = run.cfg, run.accelerator, run.state, run.model, run.train_set
    optimizer, scheduler, checkpoints = run.optimizer, run.scheduler, run.checkpoints
    rank, world = accelerator.process_index, accelerator.num_processes
    log = accelerator.print
    src_lengths, tgt_lengths = sequence_lengths(train_set, "input_ids"), sequence_lengths(train_set, "labels")

    # SIGTERM (schedulers, `kill`) and SIGINT (Ctrl-C) finish the current update, checkpoint and exit.
    stop_signal = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop_signal.append(signum))

    unwrapped = accelerator.unwrap_model(model)
    progress = tqdm(
        total=cfg.train.max_steps, initial=state.step, disable=not accelerator.is_main_process, desc="updates"
    )
    last_checkpoint_time = time.monotonic()
    # Sums since the last log line; a resumed run's first line covers the updates since the resume, not log_every.
    logged_loss, logged_updates = torch.zeros((), device=accelerator.device), 0
    logged_tokens, logged_seconds = 0, 0.0
    # The last update whose loss was finite on every process, and this process's loss there (a tensor, read only if
    # the run diverges: no synchronisation per update).
    last_finite = None
    # A resumed run whose budget is already spent trains no further update.
    finished = _finished(cfg, state)
    plan = []
    while not finished:
        plan = plan_epoch(
            src_lengths, tgt_lengths, max_tokens=cfg.train.max_tokens, update_tokens=cfg.train.update_tokens,
            num_processes=world, seed=cfg.train.seed, epoch=state.epoch,
        )  # fmt: skip
        if not plan:
            # Every epoch would be empty and the loop would never end.
            raise SystemExit(
                f"Nothing to train on: {len(train_set)} training pairs ({run.dropped} over data.max_length="
                f"{cfg.data.max_length} tokens dropped) make no update of a micro-batch for each of {world} "
                "process(es). Raise data.max_length, give a larger corpus, or run fewer processes."
            )
        for update in plan[state.update_in_epoch :]:
            started = time.perf_counter()
            model.train()
            micro_batches = update.for_process(rank, world)
            update_loss = torch.zeros((), device=accelerator.device)
            for i, indices in enumerate(micro_batches):
                batch = {
                    k: v.to(accelerator.device)
                    for k, v in collate(train_set[indices], run.model_config.pad_token_id).items()
                }
                # Gradients are summed locally and averaged across processes only on the last micro-batch; dividing
                # each loss by (update tokens / processes) makes the result the update's per-token mean (§5.1).
                sync = nullcontext() if i == len(micro_batches) - 1 else accelerator.no_sync(model)
                with sync:
                    loss = training_loss(model, batch, cfg.train.label_smoothing, update.target_tokens / world)
                    accelerator.backward(loss)
                update_loss += loss.detach()
            logged_loss += update_loss
            logged_updates += 1
            if cfg.train.clip_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            seconds = time.perf_counter() - started
            state.step += 1
            state.update_in_epoch += 1
            state.target_tokens += update.target_tokens
            state.train_seconds += seconds
            logged_tokens += update.target_tokens
            logged_seconds += seconds
            progress.update()

            if state.step % cfg.train.log_every == 0:
                mean_loss = accelerator.reduce(logged_loss, "mean").item() / logged_updates
                metrics = {
                    "train/loss": mean_loss,
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/target_tokens_per_s": logged_tokens / logged_seconds,
                    "train/minutes": state.train_seconds / 60,
                    "train/epoch": state.epoch + state.update_in_epoch / len(plan),
                }
                accelerator.log(metrics, step=state.step)
                progress.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{logged_tokens / logged_seconds:.0f}")
                logged_loss.zero_()
                logged_updates, logged_tokens, logged_seconds = 0, 0, 0.0

            # Every process must agree on stopping, validating and checkpointing, even when only one got the signal
            # or the clocks differ (each measures its own update time): a max over processes, taken before any of
            # them, since validation and checkpointing are collective too.
            due = _checkpoint_due(cfg, state.step, time.monotonic() - last_checkpoint_time)
            finished = _budget_spent(cfg, state)
            # A loss that is not finite on any process (NaN, inf) is divergence: Adam has already taken the update,
            # so the weights are lost too, and training on would only average NaN checkpoints into the model.
            flags = torch.cat(
                [
                    torch.tensor([float(bool(stop_signal)), float(due), float(finished)], device=accelerator.device),
                    (~torch.isfinite(update_loss)).float().reshape(1),
                ]
            )
            stop, due, finished, diverged = (bool(x) for x in accelerator.reduce(flags, "max").tolist())
            if not diverged and (due or stop or finished):
                # A gradient that was not finite leaves the loss of its own update finite but the weights not:
                # checked before they are saved, so that every checkpoint kept holds finite weights.
                diverged = not _weights_finite(model, accelerator)
            if diverged:
                progress.close()
                finite = None if last_finite is None else (last_finite[0], last_finite[1].item())
                raise SystemExit(_divergence_message(run, state.step, finite))
            last_finite = (state.step, update_loss)
            if (
                run.valid_set is not None
                and cfg.eval.every_steps
                and (state.step % cfg.eval.every_steps == 0 or finished)
            ):
                metrics = validate(unwrapped, run.tokenizer, run.valid_set, run.corpus["validation"], cfg, accelerator)
                accelerator.log(metrics, step=state.step)
                log(f"update {state.step}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
            if due or stop or finished:
                path = checkpoints.save(accelerator, state.step, model, state)
                last_checkpoint_time = time.monotonic()
                log(f"saved {path}")
            if stop:
                log(f"stopped by signal at update {state.step}; continue with --resume")
                progress.close()
                return False
            if finished:
                break
        else:
            state.epoch += 1
            state.update_in_epoch = 0
            finished = finished or (cfg.train.max_epochs is not None and state.epoch >= cfg.train.max_epochs)
            if finished:
                checkpoints.save(accelerator, state.step, model, state)
    progress.close()
    run.updates_per_epoch = len(plan)
    return True


def _weights_finite(model, accelerator) -> bool:
    """Whether every weight of every process is finite (a collective: all processes call it together)."""
    local = all(bool(torch.isfinite(getattr(p, "_local_tensor", p)).all()) for p in model.parameters())
    flag = torch.tensor([float(not local)], device=accelerator.device)
    return not bool(accelerator.reduce(flag, "max").item())


def _divergence_message(run: Run, step: int, last_finite: tuple[int, float] | None) -> str:
    """What stopped the run, what is kept and what to try."""
    latest = run.checkpoints.latest()
    kept = (
        f"the last checkpoint, {latest} (update {checkpoint_state(latest)['step']}), holds finite weights"
        if latest is not None
        else "no checkpoint was written before it"
    )
    finite = f"the last finite loss was {last_finite[1]:.4g}, at update {last_finite[0]}" if last_finite else ""
    return (
        f"error: training diverged at update {step}: the loss or the weights are no longer finite (NaN or "
        f"infinity){'; ' + finite if finite else ''}. Nothing more was saved and no model was averaged; {kept}. Start "
        f"a new run (another output_dir) with a lower train.lr_scale (now {run.cfg.train.lr_scale}), more "
        f"train.warmup_steps (now {run.cfg.train.warmup_steps}), or train.clip_norm (now {run.cfg.train.clip_norm})."
    )


def finish(run: Run) -> None:
    """§6.1: the final model averages the last checkpoints; the summary says what the run did."""
    cfg, state, accelerator = run.cfg, run.state, run.accelerator
    if accelerator.is_main_process:
        last = run.checkpoints.checkpoints()[-cfg.checkpoint.average_last :]
        model_dir = save_averaged_model(last, run.run_dir.model_config, run.run_dir.model, tokenizer=run.tokenizer)
        summary = {
            "updates": state.step,
            "epochs": state.epoch + state.update_in_epoch / max(run.updates_per_epoch, 1),
            "target_tokens": state.target_tokens,
            "train_minutes": state.train_seconds / 60,
            "averaged_checkpoints": [p.name for p in last],
            "mixed_precision": run.accelerator.mixed_precision,
        }
        run.run_dir.write_json(run.run_dir.train_summary, summary)
        accelerator.print(f"averaged {len(last)} checkpoints into {model_dir}: {summary}")


def _finished(cfg: RunConfig, state: TrainingState) -> bool:
    return _budget_spent(cfg, state) or (cfg.train.max_epochs is not None and state.epoch >= cfg.train.max_epochs)


def _budget_spent(cfg: RunConfig, state: TrainingState) -> bool:
    t = cfg.train
    return (t.max_steps is not None and state.step >= t.max_steps) or (
        t.max_minutes is not None and state.train_seconds >= t.max_minutes * 60
    )


def _checkpoint_due(cfg: RunConfig, step: int, seconds_since: float) -> bool:
    c = cfg.checkpoint
    return (c.every_steps is not None and step % c.every_steps == 0) or (
        c.every_minutes is not None and seconds_since >= c.every_minutes * 60
    )


if __name__ == "__main__":
    raise SystemExit(main())
