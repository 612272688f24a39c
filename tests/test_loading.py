"""Loading a saved directory: Auto classes with the package, remote code without it, the translation pipeline both
ways, and refusal of weights that do not fit the config."""

import json
import os

import pytest
import torch
from conftest import load_without_package
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

from vaswani_hf import (
    TranslationPipeline,
    VaswaniConfig,
    VaswaniForConditionalGeneration,
    VaswaniModel,
    train_shared_bpe,
)

CORPUS = ["the house is small", "das Haus ist klein", "the cat sleeps", "die Katze schläft"] * 20


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = train_shared_bpe(CORPUS, vocab_size=80)
    config = VaswaniConfig(
        vocab_size=len(tokenizer), d_model=16, d_ff=32, num_heads=2, encoder_layers=2, decoder_layers=2
    )
    model = VaswaniForConditionalGeneration(config).eval()
    path = tmp_path_factory.mktemp("saved")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_saved_directory_holds_safetensors_code_and_no_pickles(saved_dir):
    names = set(os.listdir(saved_dir))
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert {"configuration_vaswani.py", "modeling_vaswani.py", "pipeline_translation.py"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]


def test_auto_classes_load_after_import(saved_dir):
    assert isinstance(AutoConfig.from_pretrained(saved_dir), VaswaniConfig)
    assert type(AutoModel.from_pretrained(saved_dir)) is VaswaniModel
    model = AutoModelForSeq2SeqLM.from_pretrained(saved_dir)
    assert type(model) is VaswaniForConditionalGeneration
    reference = VaswaniForConditionalGeneration.from_pretrained(saved_dir)
    batch = AutoTokenizer.from_pretrained(saved_dir)(
        ["the house", "die Katze schläft"], padding=True, return_tensors="pt"
    )
    assert torch.equal(model.generate(**batch), reference.generate(**batch))


def test_pipeline_after_import(saved_dir):
    translator = pipeline("translation", model=str(saved_dir))
    assert isinstance(translator, TranslationPipeline)
    single = translator("the house", max_new_tokens=4)
    assert len(single) == 1 and isinstance(single[0]["translation_text"], str)
    batch = translator(["the house", "", "the cat sleeps"], batch_size=2, num_beams=2, max_new_tokens=4)
    assert len(batch) == 3 and batch[1]["translation_text"] == ""
    assert batch[0] == translator("the house", num_beams=2, max_new_tokens=4)[0]


# Loads a saved folder in a process that cannot open a network connection, with transformers' defaults (from 5.25 the
# `kernels` integration is on for every `from_pretrained`), and writes the logits it computes.
NO_NETWORK_LOAD = """
import socket, sys
import torch

def refuse(*args, **kwargs):
    raise OSError("no network in this test")

socket.socket.connect = refuse
socket.create_connection = refuse
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
import vaswani_hf

path, out = sys.argv[1:3]
model = AutoModelForSeq2SeqLM.from_pretrained(path)
batch = AutoTokenizer.from_pretrained(path)(["the house", "die Katze"], padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**batch, decoder_input_ids=torch.ones_like(batch["input_ids"][:, :3])).logits
torch.save({"logits": logits}, out)
pipeline("translation", model=path)("the house", max_new_tokens=3)
"""


def test_loading_works_offline_on_a_cpu_with_transformers_defaults(saved_dir, tmp_path):
    """transformers 5.25 enables the `kernels` integration in `from_pretrained` by default: a saved model still loads
    and computes the same logits in a process with no network at all, and the pipeline runs."""
    import subprocess
    import sys

    script, out = tmp_path / "load.py", tmp_path / "logits.pt"
    script.write_text(NO_NETWORK_LOAD)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "USE_HUB_KERNELS")}
    result = subprocess.run(
        [sys.executable, str(script), str(saved_dir), str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model = VaswaniForConditionalGeneration.from_pretrained(saved_dir).eval()
    batch = AutoTokenizer.from_pretrained(saved_dir)(["the house", "die Katze"], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch, decoder_input_ids=torch.ones_like(batch["input_ids"][:, :3])).logits
    torch.testing.assert_close(torch.load(out)["logits"], expected, rtol=0, atol=1e-6)


def test_translation_task_restored_without_breaking_other_tasks():
    from transformers.pipelines import PIPELINE_REGISTRY, check_task

    assert check_task("translation")[1]["impl"] is TranslationPipeline
    # Tasks transformers still ships resolve as before; the other removed ones stay removed.
    assert check_task("text-generation")[0] == "text-generation"
    assert "fill-mask" in PIPELINE_REGISTRY.get_supported_tasks()
    with pytest.raises(KeyError, match="summarization"):
        check_task("summarization")


def test_loads_without_the_package_through_remote_code(saved_dir, run_without_package):
    sentences = ["the house", "die Katze schläft"]
    report = load_without_package(run_without_package, saved_dir, sentences, max_new_tokens=4)
    assert report["refused_without_trust"]
    assert report["config_class"] == "VaswaniConfig"
    assert report["model_class"] == "VaswaniForConditionalGeneration"
    assert report["model_module"].startswith("transformers_modules")
    assert report["base_class"] == "VaswaniModel"
    assert report["pipeline_module"].startswith("transformers_modules")
    assert report["num_beams"] == 4 and report["length_penalty_type"] == "gnmt"
    assert report["translations"][-1] == {"translation_text": ""}
    # The remote copy of the code computes exactly what the package computes.
    batch = AutoTokenizer.from_pretrained(saved_dir)(sentences, padding=True, return_tensors="pt")
    local = VaswaniForConditionalGeneration.from_pretrained(saved_dir).generate(**batch)
    assert report["generated"] == local.tolist()


def test_weights_that_do_not_fit_the_config_are_refused(saved_dir, tmp_path):
    wrong_vocab = tmp_path / "wrong_vocab"
    AutoModelForSeq2SeqLM.from_pretrained(saved_dir).save_pretrained(wrong_vocab)
    config = json.loads((wrong_vocab / "config.json").read_text())
    config["vocab_size"] += 7
    (wrong_vocab / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForSeq2SeqLM.from_pretrained(wrong_vocab)

    missing = tmp_path / "missing"
    AutoModelForSeq2SeqLM.from_pretrained(saved_dir).save_pretrained(missing)
    tensors = load_file(missing / "model.safetensors")
    del tensors["model.decoder.layers.1.ffn.fc2.weight"]
    save_file(tensors, missing / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not match its config, missing: model.decoder.layers.1.ffn.fc2.weight"):
        AutoModelForSeq2SeqLM.from_pretrained(missing)


def test_weights_of_another_architecture_are_refused(tmp_path):
    """Learned positions and pre-norm weights under a config edited to sinusoidal/post-norm: the unexpected tensors are
    as loud as missing ones."""
    config = VaswaniConfig(
        vocab_size=40, d_model=16, d_ff=32, num_heads=2, encoder_layers=1, decoder_layers=1,
        position_embedding_type="learned", norm_first=True,
    )  # fmt: skip
    VaswaniForConditionalGeneration(config).save_pretrained(tmp_path)
    edited = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(
        json.dumps({**edited, "position_embedding_type": "sinusoidal", "norm_first": False})
    )
    with pytest.raises(ValueError, match="unexpected: .*embed_positions.weight"):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    # Asked for the report, the caller gets it and decides.
    _, info = VaswaniForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert any("embed_positions" in key for key in info["unexpected_keys"])
