"""Tests for vaswani_hf.analysis.attention_maps and scripts/plot_attention.py, on a tiny random model and a tiny BPE trained here."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_rnn_config
from PIL import Image

from vaswani_hf import RNNForConditionalGeneration, VaswaniForConditionalGeneration, train_shared_bpe
from vaswani_hf.analysis.attention_maps import (
    ALIGNMENT_FILE,
    KINDS,
    attention_weights,
    compute_attention_maps,
    load_model,
    plot_attention_maps,
)

from toy_task import word_tokenizer

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "plot_attention.py"
PAIRS = [
    ("Click the button to open the dialog.", "Klicken Sie auf die Schaltfläche, um den Dialog zu öffnen."),
    ("Select the cells.", "Wählen Sie die Zellen aus."),
    ("Save the document.", "Speichern Sie das Dokument."),
]
SOURCES = [source for source, _ in PAIRS]
TARGETS = [target for _, target in PAIRS]
FAST = dict(num_beams=1, max_new_tokens=6)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer():
    return train_shared_bpe([text for pair in PAIRS for text in pair] * 3, vocab_size=150, min_frequency=1)


@pytest.fixture
def model(tiny_config, tokenizer):
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tokenizer), attn_implementation="eager")
    return VaswaniForConditionalGeneration(config).eval()


def assert_distributions(maps):
    """Every plotted row sums to 1 and no decoder position sees a later one."""
    for kind in KINDS:
        weights = maps.weights(kind)  # (N, H, queries, keys)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        assert (weights >= 0).all()
    future = torch.ones(maps.decoder.shape[-2:], dtype=torch.bool).triu(diagonal=1)  # (T, T): key after query
    assert (maps.decoder[..., future] == 0).all()


def test_generated_targets_in_a_padded_batch(model, tokenizer):
    maps = compute_attention_maps(model, tokenizer, SOURCES, **FAST)

    sequences = model.generate(**tokenizer(SOURCES, padding=True, return_tensors="pt"), **FAST)
    assert [m.translation for m in maps] == tokenizer.batch_decode(sequences, skip_special_tokens=True)
    lengths = {len(m.source_tokens) for m in maps}
    assert len(lengths) > 1, "the sources must differ in length, or nothing is padded"
    for m, source in zip(maps, SOURCES, strict=True):
        source_tokens = tokenizer.convert_ids_to_tokens(tokenizer(source).input_ids)
        assert m.source_tokens == source_tokens
        assert m.decoder_inputs[0] == "<s>" and m.decoder_inputs[1:] == m.decoder_outputs[:-1]
        s, t = len(m.source_tokens), len(m.decoder_outputs)
        assert m.encoder.shape == (2, 2, s, s)
        assert m.decoder.shape == (2, 2, t, t)
        assert m.cross.shape == (2, 2, t, s)
        assert m.alignment().shape == (t, s)
        assert_distributions(m)


def test_given_targets_and_padding_columns(model, tokenizer):
    maps = compute_attention_maps(model, tokenizer, SOURCES, TARGETS)
    for m, target in zip(maps, TARGETS, strict=True):
        assert m.decoder_outputs == tokenizer.convert_ids_to_tokens(tokenizer(text_target=target).input_ids)
        assert m.decoder_outputs[-1] == "</s>"
        assert m.translation == target
        assert_distributions(m)

    # The same weights as each pair run alone: padding changes nothing.
    for i in range(len(PAIRS)):
        (alone,) = compute_attention_maps(model, tokenizer, SOURCES[i : i + 1], TARGETS[i : i + 1])
        for kind in KINDS:
            torch.testing.assert_close(alone.weights(kind), maps[i].weights(kind))

    # Before cropping, padded source keys get exactly 0 from every real query.
    source = tokenizer(SOURCES, padding=True, return_tensors="pt")
    labels = tokenizer(text_target=TARGETS, padding=True, return_tensors="pt")
    weights = attention_weights(
        model,
        source.input_ids,
        source.attention_mask,
        model.shift_tokens_right(labels.input_ids),
        labels.attention_mask,
    )
    padded_keys = source.attention_mask == 0  # (B, S)
    assert padded_keys.any()
    for b in range(len(PAIRS)):
        s, t = int(source.attention_mask[b].sum()), int(labels.attention_mask[b].sum())
        assert (weights["encoder"][b, :, :, :s][..., padded_keys[b]] == 0).all()
        assert (weights["cross"][b, :, :, :t][..., padded_keys[b]] == 0).all()


def test_plots_are_pngs(model, tokenizer, tmp_path):
    (maps,) = compute_attention_maps(model, tokenizer, SOURCES[:1], **FAST)
    paths = plot_attention_maps(maps, tmp_path / "maps")

    expected = {f"{kind}_layer{n}.png" for kind in KINDS for n in (1, 2)} | {ALIGNMENT_FILE}
    assert {p.name for p in paths} == expected
    assert {p.name for p in (tmp_path / "maps").iterdir()} == expected  # no temporary file left behind
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(path) as image:
            image.verify()
            width, height = image.size
        # A panel per head (2 here), each a couple of inches at 100 dpi.
        assert 200 <= width <= 2000 and 150 <= height <= 1200, (path.name, image.size)


def test_missing_matplotlib_names_the_extra(model, tokenizer, tmp_path, monkeypatch):
    (maps,) = compute_attention_maps(model, tokenizer, SOURCES[:1], TARGETS[:1])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "vaswani_hf\[plots\]"'):
        plot_attention_maps(maps, tmp_path)
    assert not any(tmp_path.iterdir())


def test_bad_input(model, tokenizer, tiny_config):
    with pytest.raises(ValueError, match="index 1 is empty"):
        compute_attention_maps(model, tokenizer, ["Save the document.", "  "])
    with pytest.raises(ValueError, match="No source sentence"):
        compute_attention_maps(model, tokenizer, [])
    with pytest.raises(TypeError, match="as a list"):
        compute_attention_maps(model, tokenizer, "Save the document.")
    with pytest.raises(ValueError, match="target sentence at index 0 is empty"):
        compute_attention_maps(model, tokenizer, SOURCES[:1], [""])
    with pytest.raises(ValueError, match="1 source sentences but 2 targets"):
        compute_attention_maps(model, tokenizer, SOURCES[:1], TARGETS[:2])
    # The tiny model has 32 positions.
    with pytest.raises(ValueError, match=r"source at index 0 .* more than the model's max_position_embeddings=32"):
        compute_attention_maps(model, tokenizer, [" ".join(SOURCES * 4)])
    with pytest.raises(ValueError, match=r"target at index 0 .* max_position_embeddings=32"):
        compute_attention_maps(model, tokenizer, SOURCES[:1], [" ".join(TARGETS * 4)])

    with pytest.raises(ValueError, match="call model.eval"):
        compute_attention_maps(model.train(), tokenizer, SOURCES[:1])
    sdpa = VaswaniForConditionalGeneration(tiny_config(vocab_size=len(tokenizer), attn_implementation="sdpa")).eval()
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        compute_attention_maps(sdpa, tokenizer, SOURCES[:1])


def test_load_model(model, tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "missing")
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="No tokenizer"):
        load_model(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    loaded, loaded_tokenizer = load_model(tmp_path / "model", tmp_path / "tokenizer")
    assert loaded.config._attn_implementation == "eager" and not loaded.training
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()


def run_script(*argv) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(SCRIPT), *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_script_end_to_end(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out_dir = tmp_path / "out"
    done = run_script(tmp_path / "model", SOURCES[0], "--output-dir", out_dir, "--num-beams", "1", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "source: ▁Click ▁the" in done.stdout
    written = {line.removeprefix("wrote ") for line in done.stdout.splitlines() if line.startswith("wrote ")}
    assert {Path(p).name for p in written} == {p.name for p in out_dir.iterdir()}
    assert len(written) == 3 * 2 + 1

    # A user's mistake is one line naming the script, no traceback.
    refused = run_script(tmp_path / "missing", SOURCES[0])
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert re.search(r"^plot_attention.py: error: .* is not a saved model", refused.stderr, flags=re.M)


def test_a_recurrent_model_has_only_encoder_decoder_attention(tmp_path):
    """The recurrent model's attention is drawn as its one kind; without attention there is nothing to draw."""
    pytest.importorskip("matplotlib")

    torch.manual_seed(0)
    model = RNNForConditionalGeneration(tiny_rnn_config("gru", "additive", True, vocab_size=16)).eval()
    (maps,) = compute_attention_maps(model, word_tokenizer(), ["w4 w5 w6"], targets=["w6 w5"])
    assert maps.encoder is None and maps.decoder is None
    assert maps.cross.shape == (1, 1, 3, 4)  # one layer, one "head", w6 w5 </s> against w4 w5 w6 </s>
    torch.testing.assert_close(maps.alignment().sum(-1), torch.ones(3))
    paths = plot_attention_maps(maps, tmp_path)
    assert sorted(path.name for path in paths) == ["alignment.png", "cross_layer1.png"]

    alone = RNNForConditionalGeneration(tiny_rnn_config("gru", "none", True, vocab_size=16)).eval()
    with pytest.raises(ValueError, match="returns no encoder-decoder attention"):
        compute_attention_maps(alone, word_tokenizer(), ["w4 w5"], targets=["w5"])
