"""Checkpoints of a training run and their average (vaswani_hf.training.checkpoints): the last k kept, a failed save
leaving the earlier ones intact, and the averaged model loading with the Auto classes."""

import pytest
import torch
from conftest import FakeAccelerator
from safetensors.torch import save_file

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.training.checkpoints import (
    CheckpointManager,
    average_checkpoints,
    save_averaged_model,
    store_tied_weights_once,
)


@pytest.mark.parametrize("once", [True, False], ids=["tied-stored-once", "accelerate-alone"])
def test_a_checkpoint_stores_the_tied_matrix_once_without_a_warning(tmp_path, tiny_config, caplog, once):
    """accelerate 1.16 warns "Removed shared tensor ... check ..." at every save of a tied model; with
    `store_tied_weights_once` a checkpoint holds the shared matrix once, says nothing, and loads back tied."""
    from accelerate import Accelerator
    from safetensors import safe_open

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(VaswaniForConditionalGeneration(tiny_config()))
    if once:
        store_tied_weights_once(accelerator)
    with caplog.at_level("WARNING"):
        accelerator.save_state(str(tmp_path / "checkpoint"), safe_serialization=True)
    warned = "Removed shared tensor" in caplog.text
    if not once:
        # The warning this guards against: if accelerate stops giving it, the hook is no longer needed.
        assert warned, caplog.text
        return
    assert not warned, caplog.text
    with safe_open(tmp_path / "checkpoint" / "model.safetensors", "pt") as f:
        names = set(f.keys())
    assert "model.encoder.embeddings.embed_tokens.weight" in names
    assert not names & set(model.all_tied_weights_keys), names
    expected = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    accelerator.load_state(str(tmp_path / "checkpoint"))
    for name, p in model.named_parameters():
        assert torch.equal(p, expected[name]), name
    embedding = model.model.encoder.embeddings.embed_tokens.weight
    assert model.lm_head.weight is embedding and model.model.decoder.embeddings.embed_tokens.weight is embedding


def test_checkpoints_keep_the_last_k_and_sort_numerically(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (5, 10, 100, 1000):
        manager.save(FakeAccelerator(), step)
    assert [p.name for p in manager.checkpoints()] == ["checkpoint-00000100", "checkpoint-00001000"]
    assert manager.latest().name == "checkpoint-00001000"


def test_a_failed_save_leaves_earlier_checkpoints_intact(tmp_path):
    manager = CheckpointManager(tmp_path, keep=5)
    good = manager.save(FakeAccelerator(), 1)
    with pytest.raises(RuntimeError, match="could not write checkpoint.*No space left.*--resume.*intact"):
        manager.save(FakeAccelerator(error=OSError(28, "No space left on device")), 2)
    assert manager.checkpoints() == [good]
    assert sorted(p.name for p in tmp_path.iterdir()) == [good.name]  # no partial directory left behind


def test_average_checkpoints_is_the_mean(tmp_path):
    paths = []
    for i in range(3):
        path = tmp_path / f"c{i}"
        path.mkdir()
        save_file(
            {"a": torch.full((2,), float(i)), "b": torch.tensor([i], dtype=torch.bfloat16)}, path / "model.safetensors"
        )
        paths.append(path)
    averaged = average_checkpoints(paths)
    assert averaged["a"].tolist() == [1.0, 1.0]
    assert averaged["b"].dtype == torch.bfloat16 and averaged["b"].item() == 1.0


def test_average_checkpoints_refuses_other_configurations(tmp_path):
    for name, shape in (("c0", (2,)), ("c1", (3,))):
        (tmp_path / name).mkdir()
        save_file({"a": torch.zeros(shape)}, tmp_path / name / "model.safetensors")
    with pytest.raises(ValueError, match="one model configuration"):
        average_checkpoints([tmp_path / "c0", tmp_path / "c1"])
    with pytest.raises(FileNotFoundError):
        average_checkpoints([tmp_path / "missing"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_average_checkpoints_refuses_weights_that_are_not_finite(tmp_path, bad):
    for name, value in (("c0", 1.0), ("c1", bad)):
        (tmp_path / name).mkdir()
        save_file({"a": torch.full((2,), value), "b": torch.zeros(2)}, tmp_path / name / "model.safetensors")
    with pytest.raises(
        ValueError, match=r"c1/model.safetensors holds weights that are not finite .* 1 of its 2 tensors \(a\)"
    ):
        average_checkpoints([tmp_path / "c0", tmp_path / "c1"])


def test_average_checkpoints_names_a_damaged_checkpoint(tmp_path):
    for name in ("c0", "c1"):
        (tmp_path / name).mkdir()
        save_file({"a": torch.ones(64)}, tmp_path / name / "model.safetensors")
    damaged = tmp_path / "c1" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"c1/model.safetensors cannot be read .*damaged; average the others"):
        average_checkpoints([tmp_path / "c0", tmp_path / "c1"])


def test_save_averaged_model_loads_with_auto_classes_and_keeps_ties(tmp_path, tiny_config):
    from transformers import AutoModelForSeq2SeqLM

    config = tiny_config()
    config.save_pretrained(tmp_path / "config")
    checkpoints = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = VaswaniForConditionalGeneration(config)
        model.save_pretrained(tmp_path / f"ckpt{seed}")
        checkpoints.append(tmp_path / f"ckpt{seed}")
    first, second = (AutoModelForSeq2SeqLM.from_pretrained(c).state_dict() for c in checkpoints)
    save_averaged_model(checkpoints, tmp_path / "config", tmp_path / "model")
    averaged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "model")
    for name, tensor in averaged.state_dict().items():
        torch.testing.assert_close(tensor, (first[name] + second[name]) / 2)
    assert averaged.lm_head.weight is averaged.model.decoder.embeddings.embed_tokens.weight
