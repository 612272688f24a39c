"""Tests of `vaswani_hf.export.hub` and `vaswani-push`: staging and offline validation on a tiny model, and the
error paths of an upload with `HfApi` replaced by fakes, so that nothing reaches the network."""

import importlib
import importlib.util
import json
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import save_tiny_marian
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, HTTPError, RepositoryNotFoundError
from safetensors.torch import load_file, save_file
from transformers import pipeline

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.export import hub
from vaswani_hf.export.hub import HubError, ValidationError, find_pickles, push_to_hub, stage_model, validate_staged
from vaswani_hf.export.hub.validation import PACKAGELESS_CHECK
from vaswani_hf.training.run_config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parent.parent
# The HTTP client whose errors huggingface_hub raises (httpx in 1.x, httpx2 in 2.x), to build them as it does.
http = importlib.import_module(HTTPError.__module__.split(".")[0])
CORPUS = ["the house is small", "das Haus ist klein", "the cat sleeps", "die Katze schläft"] * 20
# About 50 kB of float32 weights: shards of at most 16 kB make several files.
SHARD_SIZE = "16KB"
WRITE_TOKEN_OWNER = {"name": "someone", "auth": {"accessToken": {"role": "write"}}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model with its tokenizer in `run/model`, and the run's config beside it, as vaswani-train leaves
    them (trained on local files, so the generated card needs no corpus cache)."""
    torch.manual_seed(0)
    tokenizer = train_shared_bpe(CORPUS, vocab_size=80)
    config = VaswaniConfig(
        vocab_size=len(tokenizer), d_model=16, d_ff=32, num_heads=2, encoder_layers=2, decoder_layers=2
    )
    run_dir = tmp_path_factory.mktemp("run")
    run_config = RunConfig.load("small-cpu", [f"output_dir={run_dir}", "data.corpus=data/train"])
    (run_dir / "run_config.yaml").write_text(run_config.to_yaml())
    VaswaniForConditionalGeneration(config).save_pretrained(run_dir / "model")
    tokenizer.save_pretrained(run_dir / "model")
    return run_dir / "model"


@pytest.fixture
def staged(model_dir, tmp_path) -> Path:
    """The tiny model staged in shards, not yet validated."""
    stage = tmp_path / "stage"
    stage_model(model_dir, stage, max_shard_size=SHARD_SIZE)
    return stage


def response(status: int, url: str = "https://huggingface.co/api/repos/create") -> http.Response:
    return http.Response(status, request=http.Request("POST", url))


class FakeHub:
    """Stands in for the Hub's HTTP API: records the calls, answers as set up, fails a test that uploads
    unexpectedly."""

    def __init__(self, monkeypatch, *, exists=False, siblings=(), commit_error=None, create_error=None, role="write"):
        self.calls = []
        self.commits = []
        self.exists, self.siblings = exists, list(siblings)
        self.commit_error, self.create_error = commit_error, create_error
        self.role = role
        for name in ("whoami", "repo_info", "create_repo", "create_commit"):
            monkeypatch.setattr(HfApi, name, getattr(self, name))

    def whoami(self, token=None, **kwargs):
        self.calls.append("whoami")
        return {"name": "someone", "auth": {"accessToken": {"role": self.role}}}

    def repo_info(self, repo_id, **kwargs):
        self.calls.append("repo_info")
        if not self.exists:
            raise RepositoryNotFoundError("404 Repository Not Found", response=response(404))
        return SimpleNamespace(sha="a" * 40, siblings=[SimpleNamespace(rfilename=name) for name in self.siblings])

    def create_repo(self, repo_id, **kwargs):
        self.calls.append("create_repo")
        if self.create_error is not None:
            raise self.create_error
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append("create_commit")
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append({"repo_id": repo_id, "operations": list(operations), **kwargs})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{'b' * 40}")


def load_script():
    return importlib.import_module("vaswani_hf.cli.push")


def test_dry_run_stages_shards_that_load_without_the_package(model_dir, tmp_path, run_without_package):
    stage = tmp_path / "stage"
    lines = []
    report = push_to_hub(
        model_dir, "someone/tiny", dry_run=True, stage_dir=stage, max_shard_size=SHARD_SIZE, log=lines.append
    )
    names = {path.name for path in stage.iterdir()}
    shards = sorted(name for name in names if name.endswith(".safetensors"))
    assert len(shards) >= 3 and "model.safetensors" not in names and "model.safetensors.index.json" in names
    index = json.loads((stage / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    assert {"config.json", "generation_config.json", "tokenizer.json", "README.md", "modeling_vaswani.py"} <= names
    assert find_pickles(stage) == [] and not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert json.loads((stage / "config.json").read_text())["auto_map"]["AutoModelForSeq2SeqLM"].startswith(
        "modeling_vaswani."
    )
    # The generated card names the repository in its loading examples.
    assert 'model="someone/tiny", trust_remote_code=True' in ModelCard.load(stage / "README.md").text
    assert report.model_class.startswith("transformers_modules") and isinstance(report.translation, str)
    assert report.weight_files == shards
    assert any("dry run: nothing uploaded" in line for line in lines)

    # The shards reload, without the package, to the very model that was staged: the check that validation runs (the
    # same file) on another sentence, its report read here, its translation the original model's in this process.
    out = tmp_path / "loaded.json"
    check = PACKAGELESS_CHECK.read_text(encoding="utf-8")
    sentence = "the house is small"
    result = run_without_package(check, str(stage), sentence, str(out), str(model_dir / "model.safetensors"))
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(out.read_text())
    assert loaded["remote"] and loaded["model_module"].startswith("transformers_modules") and loaded["imported"] == []
    assert loaded["checked"] == report.num_tensors and loaded["different"] == []
    assert loaded["translation"] == pipeline("translation", model=str(model_dir))(sentence)[0]["translation_text"]


def test_a_folder_with_a_pickle_is_refused(staged, model_dir):
    (staged / "training_args.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValidationError, match=r"pickle files.*training_args.bin"):
        validate_staged(staged, model_dir)
    (staged / "training_args.bin").unlink()
    # By content too: a pickle or a torch.save archive under an innocent name.
    (staged / "notes.txt").write_bytes(pickle.dumps({"a": 1}))
    torch.save({"w": torch.zeros(2)}, staged / "extra.json")
    assert find_pickles(staged) == ["extra.json", "notes.txt"]
    with pytest.raises(ValidationError, match="pickle files"):
        validate_staged(staged, model_dir)


def test_validation_catches_weights_that_differ_and_bad_cards(staged, model_dir):
    index = json.loads((staged / "model.safetensors.index.json").read_text())
    key, shard = next(iter(index["weight_map"].items()))
    tensors = load_file(staged / shard)
    tensors[key] = tensors[key] + 1
    save_file(tensors, staged / shard, metadata={"format": "pt"})
    with pytest.raises(ValidationError, match=f"staged tensor {key} differs"):
        validate_staged(staged, model_dir)

    (staged / "README.md").write_text("---\nmodel-index:\n- name: x\n  results:\n  - metrics: []\n---\n# Card\n")
    with pytest.raises(ValidationError, match="README.md"):
        validate_staged(staged, model_dir)


def test_staging_refuses_what_cannot_be_uploaded(model_dir, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "old.safetensors").write_bytes(b"")
    with pytest.raises(HubError, match="not empty"):
        stage_model(model_dir, busy)
    with pytest.raises(HubError, match="is not a size"):
        stage_model(model_dir, tmp_path / "stage", max_shard_size="huge")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((model_dir / "config.json").read_text())
    torch.save({}, pickled / "pytorch_model.bin")
    with pytest.raises(HubError, match=r"no safetensors weights \(it holds pickle files: pytorch_model.bin\)"):
        stage_model(pickled, tmp_path / "stage2")
    # Without a card of its own, the card is generated from the run: that needs the run's config.
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    for path in model_dir.iterdir():
        (lonely / path.name).write_bytes(path.read_bytes())
    with pytest.raises(HubError, match=r"no README.md.*run_config.yaml is missing.*--card"):
        stage_model(lonely, tmp_path / "stage3")
    given = tmp_path / "card.md"
    given.write_text("---\nlicense: mit\n---\n# Tiny\n")
    stage_model(lonely, tmp_path / "stage4", card=given)
    assert (tmp_path / "stage4" / "README.md").read_text() == given.read_text()


def test_no_token_fails_before_any_network_call_or_staging(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub.upload, "get_token", lambda: None)
    fake = FakeHub(monkeypatch)
    monkeypatch.setattr(hub, "stage_model", lambda *args, **kwargs: pytest.fail("staged without a token"))
    with pytest.raises(HubError, match=r"no Hugging Face token found: log in with `hf auth login`"):
        push_to_hub(model_dir, "someone/tiny", stage_dir=tmp_path / "stage")
    assert fake.calls == []
    assert load_script().main([str(model_dir), "someone/tiny"]) == 1
    assert "error: no Hugging Face token found" in capsys.readouterr().err
    assert fake.calls == []


def test_an_existing_repository_is_refused_without_exist_ok(staged, monkeypatch):
    fake = FakeHub(monkeypatch, exists=True)
    with pytest.raises(HubError, match=r"someone/tiny already exists.*--exist-ok.*Nothing was uploaded"):
        hub.upload_staged(staged, "someone/tiny", token="hf_x")
    assert fake.calls == ["whoami", "repo_info"]


def test_update_is_one_commit_that_removes_stale_weights(staged, monkeypatch):
    remote = ["model.safetensors", "pytorch_model.bin", "README.md", ".gitattributes", "notes.md"]
    fake = FakeHub(monkeypatch, exists=True, siblings=remote)
    result = hub.upload_staged(staged, "tiny", token="hf_x", exist_ok=True)
    assert fake.calls == ["whoami", "repo_info", "create_commit"]
    (commit,) = fake.commits
    assert commit["repo_id"] == result.repo_id == "someone/tiny"  # the token's user is the namespace
    assert commit["parent_commit"] == "a" * 40
    added = {op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationAdd)}
    deleted = {op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationDelete)}
    assert added == {path.name for path in staged.iterdir()}
    # The old single file would shadow the new shards, and the pickle must go; other files stay.
    assert deleted == {"model.safetensors", "pytorch_model.bin"}
    assert result.commit_url.startswith("https://huggingface.co/someone/tiny/commit/")


def test_a_new_repository_is_created_then_committed_once(model_dir, tmp_path, monkeypatch):
    fake = FakeHub(monkeypatch)
    monkeypatch.setattr(hub.upload, "get_token", lambda: "hf_x")
    lines = []
    result = push_to_hub(model_dir, "someone/tiny", skip_validation=True, max_shard_size=SHARD_SIZE, log=lines.append)
    assert fake.calls == ["whoami", "repo_info", "create_repo", "create_commit"]
    assert result.created_repo and lines[-1].endswith(result.commit_url)
    assert len(fake.commits) == 1 and not Path(lines[0].split(" in ")[-1]).exists()  # the temporary stage is gone


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            dict(commit_error=http.ConnectError("connection refused")),
            r"could not be reached.*Nothing was committed: the repository someone/tiny was created and is empty",
        ),
        (
            dict(exists=True, commit_error=HfHubHTTPError("403 Forbidden", response=response(403))),
            r"may not upload to someone/tiny \(403 Forbidden\): it needs write access.*Nothing was committed: "
            r"someone/tiny is as it was",
        ),
        (
            dict(create_error=HfHubHTTPError("403 Forbidden", response=response(403))),
            r"may not create someone/tiny \(403 Forbidden\).*Nothing was uploaded",
        ),
        (
            dict(create_error=HfHubHTTPError("409 Conflict", response=response(409))),
            r"created by someone else meanwhile; pass --exist-ok",
        ),
        (dict(role="read"), r"read-only.*Nothing was uploaded"),
    ],
)
def test_upload_failures_say_what_happened(staged, monkeypatch, setup, message):
    FakeHub(monkeypatch, **setup)
    with pytest.raises(HubError, match=message):
        hub.upload_staged(staged, "someone/tiny", token="hf_x", exist_ok=True)


def test_network_failure_before_the_upload_is_reported(staged, monkeypatch, model_dir, capsys):
    events = []

    def unreachable(*args, **kwargs):
        events.append("whoami")
        raise http.ConnectTimeout("timed out")

    FakeHub(monkeypatch)
    monkeypatch.setattr(HfApi, "whoami", unreachable)
    with pytest.raises(
        HubError, match=r"could not check the token: the Hub could not be reached.*Nothing was uploaded"
    ):
        hub.upload_staged(staged, "someone/tiny", token="hf_x")
    # The script validates the staged folder offline first (the real check runs in the dry-run test), then says
    # what failed and exits non-zero.
    events.clear()
    monkeypatch.setattr(hub.upload, "get_token", lambda: "hf_x")

    def validated(stage, model_dir, **kwargs):
        events.append("validate")
        return hub.ValidationReport(files=[], weight_files=[], num_tensors=0, translation="", model_class="")

    monkeypatch.setattr(hub, "validate_staged", validated)
    code = load_script().main([str(model_dir), "someone/tiny", "--max-shard-size", SHARD_SIZE])
    assert code == 1 and events == ["validate", "whoami"]
    assert "error: could not check the token: the Hub could not be reached" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# Models of other types: transformers' MarianMTModel, as `model.architecture=marian` trains it
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory) -> Path:
    """A tiny MarianMTModel with the shared BPE tokenizer and its run config, as vaswani-train leaves them."""
    run_dir = tmp_path_factory.mktemp("marian-run")
    overrides = [f"output_dir={run_dir}", "data.corpus=data/train", "model.architecture=marian"]
    (run_dir / "run_config.yaml").write_text(RunConfig.load("small-cpu", overrides).to_yaml())
    save_tiny_marian(run_dir / "model", CORPUS)
    return run_dir / "model"


def test_a_transformers_model_is_staged_without_code_and_checked_with_transformers_alone(marian_dir, tmp_path):
    stage = tmp_path / "stage"
    assert stage_model(marian_dir, stage, max_shard_size=SHARD_SIZE) == []
    assert not list(stage.glob("*.py"))
    config = json.loads((stage / "config.json").read_text())
    assert config["model_type"] == "marian" and "auto_map" not in config
    report = validate_staged(stage, marian_dir)
    assert report.model_class.startswith("transformers.models.marian") and report.model_class.endswith("MarianMTModel")
    card = (stage / "README.md").read_text()
    assert "trust_remote_code" not in card and "`MarianMTModel` encoder-decoder" in card

    # A config that names code it does not carry is refused before anything loads.
    (stage / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "x.Y"}}))
    with pytest.raises(ValidationError, match=r"has auto_map \{'AutoConfig': 'x.Y'\}, not the None that MarianConfig"):
        validate_staged(stage, marian_dir)
    (stage / "config.json").write_text(json.dumps({**config, "model_type": "no-such-model"}))
    with pytest.raises(ValidationError, match="model_type 'no-such-model', which neither transformers nor vaswani_hf"):
        validate_staged(stage, marian_dir)


@pytest.mark.parametrize("name", ["README.md", "tokenizer.json", "notes.txt"])
def test_a_link_to_a_file_outside_the_model_folder_is_never_staged(model_dir, tmp_path, name):
    """A model card (or any file) that is a symbolic link to a file outside the folder would be read through and
    uploaded: the folder is refused, naming the link, and nothing is staged."""
    linked = tmp_path / "linked"
    linked.mkdir()
    for path in model_dir.iterdir():
        if path.name != name:
            (linked / path.name).write_bytes(path.read_bytes())
    secret = tmp_path / "secret.txt"
    secret.write_text("a token next to the model\n")
    (linked / name).symlink_to(secret)
    with pytest.raises(HubError, match=f"symbolic links to files outside it \\({re.escape(name)} -> .*secret.txt\\)"):
        stage_model(linked, tmp_path / "stage", card=tmp_path / "card.md")
    assert not (tmp_path / "stage").exists()
