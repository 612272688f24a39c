"""The recipe's library pieces: Eq. 3, token-budget batching, the update plan, checkpoints and their average."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FakeAccelerator
from safetensors.torch import save_file

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.data.batching import collate, token_batches
from vaswani_hf.training.checkpoints import CheckpointManager, average_checkpoints, save_averaged_model
from vaswani_hf.training.corpus import check_tokenizer
from vaswani_hf.training.loss import label_smoothed_loss, training_loss
from vaswani_hf.training.optim import noam_lambda, noam_schedule, paper_adam
from vaswani_hf.training.updates import plan_epoch


def test_eq3_values_and_first_update():
    d_model, warmup = 512, 4000
    model = torch.nn.Linear(2, 2)
    optimizer = paper_adam(model.parameters())
    schedule = noam_schedule(optimizer, d_model, warmup)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98) and optimizer.param_groups[0]["eps"] == 1e-9
    rates = []
    for _ in range(2 * warmup):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    # The lr used by update n (1-based) is Eq. 3 at n: never 0 at the first update.
    for n in (1, 2, 100, warmup, warmup + 1, 2 * warmup):
        assert rates[n - 1] == pytest.approx(d_model**-0.5 * min(n**-0.5, n * warmup**-1.5), rel=1e-12)
    assert rates[0] > 0
    assert max(range(len(rates)), key=rates.__getitem__) == warmup - 1  # peak at update `warmup`


def test_eq3_scale_and_bad_arguments():
    model = torch.nn.Linear(2, 2)
    optimizer = paper_adam(model.parameters(), lr_scale=2.0)
    noam_schedule(optimizer, 256, 10)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * noam_lambda(256, 10)(0))
    with pytest.raises(ValueError, match="warmup_steps"):
        noam_lambda(256, 0)


def lengths(n=500, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.integers(2, 60, n)
    tgt = np.clip(src + rng.integers(-5, 6, n), 2, None)
    return src.tolist(), tgt.tolist()


def test_token_batches_cover_every_pair_once_within_budget():
    src, tgt = lengths()
    batches = token_batches(src, tgt, 600, rng=np.random.default_rng(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(src)))
    for b in batches:
        assert len(b) * max(max(src[i], tgt[i]) for i in b) <= 600
    # Length bucketing: padding is a small share of the padded tokens.
    padded = sum(len(b) * max(tgt[i] for i in b) for b in batches)
    assert sum(tgt) / padded > 0.9


def test_token_batches_reject_a_pair_over_the_budget():
    with pytest.raises(ValueError, match="max_tokens"):
        token_batches([10, 700], [10, 10], 600, rng=np.random.default_rng(0))


@pytest.mark.parametrize("num_processes", [1, 2, 3])
def test_plan_epoch_updates(num_processes):
    src, tgt = lengths()
    plan = plan_epoch(src, tgt, max_tokens=600, update_tokens=2000, num_processes=num_processes, seed=3, epoch=1)
    for update in plan:
        assert len(update.micro_batches) % num_processes == 0
        assert update.target_tokens == sum(tgt[i] for b in update.micro_batches for i in b)
        shares = [update.for_process(r, num_processes) for r in range(num_processes)]
        assert sorted(b for s in shares for b in s) == sorted(update.micro_batches)
    assert all(u.target_tokens >= 2000 for u in plan[:-1])
    used = [i for u in plan for b in u.micro_batches for i in b]
    assert len(used) == len(set(used))
    # At most num_processes - 1 batches are left out of an epoch.
    all_batches = token_batches(src, tgt, 600, rng=np.random.default_rng([3, 1]))
    assert len(all_batches) - sum(len(u.micro_batches) for u in plan) < num_processes


def test_plan_epoch_is_a_function_of_seed_and_epoch():
    src, tgt = lengths()
    kwargs = dict(max_tokens=600, update_tokens=2000)
    assert plan_epoch(src, tgt, seed=1, epoch=0, **kwargs) == plan_epoch(src, tgt, seed=1, epoch=0, **kwargs)
    assert plan_epoch(src, tgt, seed=1, epoch=0, **kwargs) != plan_epoch(src, tgt, seed=1, epoch=1, **kwargs)


def test_collate_pads_sources_with_pad_and_labels_with_minus_100():
    batch = collate({"input_ids": [[5, 6, 2], [7, 2]], "labels": [[8, 2], [9, 9, 9, 2]]}, pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 2], [7, 2, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[8, 2, -100, -100], [9, 9, 9, 2]]


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


def test_check_tokenizer_names_the_mismatch(tiny_config):
    class Tok:
        pad_token_id, eos_token_id = 0, 2

        def __len__(self):
            return 100

    with pytest.raises(ValueError, match="100 tokens.*vocabulary has 64"):
        check_tokenizer(tiny_config(), Tok())
    Tok.__len__ = lambda self: 64
    Tok.eos_token_id = 3
    with pytest.raises(ValueError, match="eos_token_id"):
        check_tokenizer(tiny_config(), Tok())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_configures_glibc():
    """In a process of its own: the setting is process-wide, and would change what memory tests after it measure."""
    code = "from vaswani_hf.training.memory import keep_freed_memory; assert keep_freed_memory() is True"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_validation_loss_is_the_per_token_cross_entropy(tiny_config):
    from accelerate import Accelerator
    from datasets import Dataset

    from vaswani_hf.training.validation import validation_loss

    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config()).eval()
    rng = np.random.default_rng(0)
    rows = [
        {"input_ids": rng.integers(4, 64, n).tolist() + [2], "labels": rng.integers(4, 64, m).tolist() + [2]}
        for n, m in [(3, 5), (7, 2), (4, 4), (9, 6), (1, 1)]
    ]
    metrics = validation_loss(
        model,
        Dataset.from_list(rows),
        max_tokens=16,
        pad_token_id=0,
        accelerator=Accelerator(cpu=True),
        label_smoothing=0.1,
    )
    # The reference: each pair on its own, summed over all target tokens.
    nll, smoothed, tokens = 0.0, 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor(row["labels"])
            logits = model(input_ids=torch.tensor([row["input_ids"]]), labels=labels[None]).logits[0]
            nll += torch.nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            smoothed += torch.nn.functional.cross_entropy(logits, labels, reduction="sum", label_smoothing=0.1).item()
            tokens += len(row["labels"])
    assert metrics["valid/tokens"] == tokens
    assert metrics["valid/nll"] == pytest.approx(nll / tokens, rel=1e-5)
    assert metrics["valid/ppl"] == pytest.approx(np.exp(nll / tokens), rel=1e-5)
    assert metrics["valid/loss"] == pytest.approx(smoothed / tokens, rel=1e-5)


def test_training_loss_is_label_smoothed_cross_entropy_over_the_update(tiny_config):
    """§5.4 in the recipe: PyTorch's label smoothing on the model's logits, summed over target tokens and divided by
    the update's token count; the decoder reads the labels shifted right, as in the model's own loss."""
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config()).train()
    batch = collate({"input_ids": [[5, 6, 7, 2], [8, 2]], "labels": [[9, 10, 2], [11, 12, 13, 14, 2]]}, pad_token_id=0)
    loss = training_loss(model, batch, 0.1, num_items_in_batch=20)
    logits = model(**batch).logits
    reference = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100, label_smoothing=0.1, reduction="sum"
    )
    torch.testing.assert_close(loss, reference / 20)
    # Without smoothing and with the batch's own count it is the model's loss.
    torch.testing.assert_close(training_loss(model, batch, 0.0), model(**batch).loss)
    smoothed, plain = label_smoothed_loss(logits, batch["labels"], 0.1).item(), model(**batch).loss.item()
    assert abs(smoothed - plain) > 1e-3  # the smoothing is there
