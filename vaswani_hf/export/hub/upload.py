"""Upload: a staged folder sent to a Hub model repository as ONE commit (`HfApi.create_commit`), so that the repository
never holds half an upload: either every file lands in one commit, or nothing is committed. The token is checked
before any network call, and every failure says what happened and whether anything was created."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

# HTTPError is the HTTP client's base class as huggingface_hub uses it: without a response, it means the network failed.
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)

from .errors import HubError
from .staging import PICKLE_SUFFIXES, WEIGHTS_INDEX

TOKEN_HELP = (
    "log in with `hf auth login`, or set HF_TOKEN, with a token that has write access "
    "(https://huggingface.co/settings/tokens)"
)


@dataclass
class UploadResult:
    """A finished upload: the commit's URL and what it holds."""

    repo_id: str
    commit_url: str
    created_repo: bool
    uploaded: list[str]
    deleted: list[str] = field(default_factory=list)


def require_token(token: str | None = None) -> str:
    """`token`, else the one huggingface_hub finds (HF_TOKEN or `hf auth login`); read locally, no network."""
    token = token or get_token()
    if not token:
        raise HubError(f"no Hugging Face token found: {TOKEN_HELP}. Nothing was uploaded.")
    return token


def _hub_error(error: Exception, action: str, repo_id: str) -> str:
    """What went wrong in `action` on `repo_id`, and what to do, for an exception from huggingface_hub."""
    namespace = repo_id.split("/")[0]
    if isinstance(error, OfflineModeIsEnabled):
        return f"could not {action}: HF_HUB_OFFLINE is set. Unset it to upload (a --dry-run works offline)."
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            return f"the Hub rejected the token (401) when trying to {action}: it is invalid or expired; {TOKEN_HELP}."
        if status == 403:
            return (
                f"the token may not {action} (403 Forbidden): it needs write access to '{namespace}' (a write token, "
                "or a fine-grained token with write permission on that namespace, "
                "https://huggingface.co/settings/tokens)."
            )
        if status == 404:
            return (
                f"could not {action}: {repo_id} was not found, or the token cannot see it (404). Check the repo id "
                f"and that the token has access to '{namespace}'."
            )
        if status == 412:
            return f"could not {action}: the repository changed while uploading (412). Run the upload again."
        if status == 429:
            return f"could not {action}: the Hub is rate-limiting this account (429). Wait a few minutes and retry."
        if status is not None and status >= 500:
            return f"could not {action}: the Hub answered {status} (a server error). Retry later."
        return f"could not {action}: the Hub answered {status}: {error}"
    if isinstance(error, (HTTPError, ConnectionError, TimeoutError)):
        return (
            f"could not {action}: the Hub could not be reached ({type(error).__name__}: {error}). Check the network "
            "connection (and any proxy, HF_ENDPOINT) and run the upload again."
        )
    return f"could not {action}: {type(error).__name__}: {error}"


def _stale_remote_files(remote: list[str], staged: set[str]) -> list[str]:
    """Remote weight and pickle files that this upload does not replace. Left in place, an old `model.safetensors`
    would shadow new shards (transformers loads it first) and old pickles would stay downloadable."""
    weights = (".safetensors", WEIGHTS_INDEX, *PICKLE_SUFFIXES)
    return sorted(name for name in remote if name.endswith(weights) and name not in staged)


def upload_staged(
    stage_dir: str | Path,
    repo_id: str,
    *,
    token: str,
    exist_ok: bool = False,
    private: bool | None = None,
    commit_message: str = "Upload vaswani_hf model",
    api: HfApi | None = None,
) -> UploadResult:
    """Uploads every file of `stage_dir` to the model repository `repo_id` in ONE commit.

    The token is checked first (`whoami`; a read-only token is refused). An existing repository is refused unless
    `exist_ok`; then the commit also deletes remote weight files that the new ones do not replace, and names the
    revision it builds on, so that a concurrent change fails the commit instead of mixing two uploads. A repository
    id without a namespace goes to the token's user.

    Raises:
        HubError: naming the problem (token, permission, network, existing repository) and saying whether anything
            was created; a failed commit leaves the repository as it was.
    """
    api = api or HfApi()
    stage_dir = Path(stage_dir)
    try:
        identity = api.whoami(token=token)
    except Exception as error:  # every failure here means nothing was touched; the message says which it was
        raise HubError(f"{_hub_error(error, 'check the token', repo_id)} Nothing was uploaded.") from error
    role = identity.get("auth", {}).get("accessToken", {}).get("role")
    if role == "read":
        raise HubError(f"the token of '{identity.get('name')}' is read-only; {TOKEN_HELP}. Nothing was uploaded.")
    if "/" not in repo_id:
        repo_id = f"{identity['name']}/{repo_id}"

    try:
        info = api.repo_info(repo_id, repo_type="model", token=token)
    except GatedRepoError:
        info = None
        exists = True
    except RepositoryNotFoundError:
        info, exists = None, False
    except Exception as error:  # as above: nothing was touched yet
        raise HubError(f"{_hub_error(error, f'look up {repo_id}', repo_id)} Nothing was uploaded.") from error
    else:
        exists = True
    if exists and not exist_ok:
        raise HubError(
            f"the repository {repo_id} already exists on the Hub. Pass --exist-ok to add this upload to it as a new "
            "commit (files of the same name are replaced, stale weight files removed), or choose another repo id. "
            "Nothing was uploaded."
        )

    created = False
    if not exists:
        try:
            api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=False)
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == 409:
                raise HubError(
                    f"the repository {repo_id} was created by someone else meanwhile; pass --exist-ok to add to it. "
                    "Nothing was uploaded."
                ) from error
            raise HubError(f"{_hub_error(error, f'create {repo_id}', repo_id)} Nothing was uploaded.") from error
        except Exception as error:
            raise HubError(f"{_hub_error(error, f'create {repo_id}', repo_id)} Nothing was uploaded.") from error
        created = True

    files = sorted(str(path.relative_to(stage_dir)) for path in stage_dir.rglob("*") if path.is_file())
    operations: list = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=stage_dir / name) for name in files]
    remote = [sibling.rfilename for sibling in (getattr(info, "siblings", None) or [])]
    stale = _stale_remote_files(remote, set(files))
    operations += [CommitOperationDelete(path_in_repo=name) for name in stale]
    try:
        # create_commit uploads every file first and commits once at the end; upload_folder may split a large
        # folder into several commits, which would leave a half-uploaded model visible between them.
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            token=token,
            repo_type="model",
            parent_commit=getattr(info, "sha", None),
        )
    except Exception as error:
        where = (
            f"the repository {repo_id} was created and is empty; upload again with --exist-ok, or delete it"
            if created
            else f"{repo_id} is as it was"
        )
        raise HubError(
            f"{_hub_error(error, f'upload to {repo_id}', repo_id)} Nothing was committed: {where}."
        ) from error
    return UploadResult(
        repo_id=repo_id, commit_url=commit.commit_url, created_repo=created, uploaded=files, deleted=stale
    )
