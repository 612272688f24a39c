"""Publishing a saved model on the Hugging Face Hub: stage the exact folder (`staging`), check it offline
(`validation`), upload it as one commit (`upload`); `push_to_hub` does all three.

Any seq2seq model `AutoModelForSeq2SeqLM` loads can be published: this package's models, and transformers' own (a
`MarianMTModel` trained with `model.architecture=marian`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi

from ... import VaswaniConfig  # noqa: F401  (registers this package's model types with the Auto classes)
from .errors import HubError, ValidationError
from .staging import DEFAULT_MAX_SHARD_SIZE, stage_model
from .upload import UploadResult, require_token, upload_staged
from .validation import DEFAULT_SENTENCE, ValidationReport, find_pickles, validate_staged


def push_to_hub(
    model_dir: str | Path,
    repo_id: str | None,
    *,
    dry_run: bool = False,
    stage_dir: str | Path | None = None,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    card: str | Path | None = None,
    run_dir: str | Path | None = None,
    license: str = "apache-2.0",
    exist_ok: bool = False,
    private: bool | None = None,
    skip_validation: bool = False,
    sentence: str = DEFAULT_SENTENCE,
    commit_message: str = "Upload vaswani_hf model",
    token: str | None = None,
    api: HfApi | None = None,
    log=print,
) -> UploadResult | ValidationReport | None:
    """Stages `model_dir`, validates the staged folder and, unless `dry_run`, uploads it as one commit.

    The token is looked up before anything else, so a missing token fails at once. A dry run keeps the staged folder
    (`stage_dir`, or a new temporary folder it reports); an upload removes a temporary one afterwards. Returns the
    validation report of a dry run (None with `skip_validation`), else the `UploadResult`.

    Raises:
        HubError: see `stage_model`, `validate_staged` and `upload_staged`.
    """
    if not dry_run:
        if not repo_id:
            raise HubError("give the repository id to upload to (e.g. your-name/transformer-en-de), or --dry-run.")
        token = require_token(token)
    temporary = stage_dir is None
    stage = Path(stage_dir) if stage_dir is not None else Path(tempfile.mkdtemp(prefix="vaswani_hf-upload-"))
    try:
        left_out = stage_model(
            model_dir,
            stage,
            max_shard_size=max_shard_size,
            card=card,
            run_dir=run_dir,
            repo_id=repo_id,
            license=license,
        )
        log(f"staged {model_dir} in {stage}")
        if left_out:
            log(f"left out of the upload: {', '.join(left_out)}")
        report = None
        if not skip_validation:
            report = validate_staged(stage, model_dir, sentence=sentence)
            log(
                f"validated offline: {len(report.files)} files, {len(report.weight_files)} safetensors file(s), "
                f"{report.num_tensors} tensors equal to the original, no pickles, the card parses; without "
                f"vaswani_hf it loads as {report.model_class} and translates {sentence!r} -> {report.translation!r}"
            )
        if dry_run:
            log(f"dry run: nothing uploaded; the folder that would be uploaded is {stage}")
            return report
        result = upload_staged(
            stage, repo_id, token=token, exist_ok=exist_ok, private=private, commit_message=commit_message, api=api
        )
        log(f"uploaded {len(result.uploaded)} files to {result.repo_id} in one commit: {result.commit_url}")
        if result.deleted:
            log(f"the commit removed stale files: {', '.join(result.deleted)}")
        return result
    finally:
        if temporary and not dry_run:
            shutil.rmtree(stage, ignore_errors=True)


__all__ = [
    "HubError",
    "UploadResult",
    "ValidationError",
    "ValidationReport",
    "find_pickles",
    "push_to_hub",
    "require_token",
    "stage_model",
    "upload_staged",
    "validate_staged",
]
