"""The learning curve of a training run: each checkpoint it kept, on its own (not averaged), scored against the
updates and the minutes of training behind it. The main job and the recurrence study draw their curves from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from accelerate import Accelerator

from ..evaluation import score, translate
from ..run_dir import RunDir
from .checkpoints import CheckpointManager, averaged_model, checkpoint_state
from .validation import validation_loss


def learning_curve(
    run: RunDir,
    tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    *,
    valid_set=None,
    on_point: Callable[[dict], None] | None = None,
) -> list[dict]:
    """One point for each checkpoint kept in `run`, oldest first: `checkpoint` (its name), `updates`, `minutes` (of
    updates, validation and checkpointing not counted), `validation_loss` when `valid_set` (a tokenized split) is
    given, the per-token cross-entropy without label smoothing, and the `bleu` and `chrf` of the checkpoint's
    translations of `sources` (the paper's decoding, §6.1) against `references`. `on_point` gets each point as soon
    as it is measured."""
    accelerator = Accelerator(cpu=True) if valid_set is not None else None
    points = []
    for checkpoint in CheckpointManager(run.checkpoints, keep=1).checkpoints():
        state = checkpoint_state(checkpoint)
        model = averaged_model([checkpoint], run.model_config)
        point = {"checkpoint": checkpoint.name, "updates": state["step"], "minutes": state["train_seconds"] / 60}
        if valid_set is not None:
            point["validation_loss"] = validation_loss(
                model,
                valid_set,
                max_tokens=2048,
                pad_token_id=model.config.pad_token_id,
                accelerator=accelerator,
                label_smoothing=0.0,
            )["valid/nll"]
        scores = score(translate(model, tokenizer, sources), references)
        point |= {"bleu": scores["bleu"], "chrf": scores["chrf"]}
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points
