"""Tests of vaswani_hf.files: text files read at newlines only, and written atomically."""

import os

import pytest

from vaswani_hf.files import read_lines, save_model_dir, write_atomic


def test_read_lines_splits_at_newlines_only(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes("one\u2028still one\r\n\ntwo\x1cstill two\nlast".encode())
    assert read_lines(path) == ["one\u2028still one", "", "two\x1cstill two", "last"]
    path.write_bytes(b"a\nb\n")
    assert read_lines(path) == ["a", "b"]


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "scores.json"
    write_atomic(path, "old")
    write_atomic(path, "new ü\n")
    assert path.read_text(encoding="utf-8") == "new ü\n"
    assert [child.name for child in tmp_path.iterdir()] == ["scores.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_model_directory_has_the_permissions_of_the_users_umask(tmp_path, tiny_config, umask):
    """transformers writes model.safetensors readable by its owner alone (0600) and mkdtemp makes a private folder:
    the model directory that save_model_dir publishes follows the umask, as files the user writes do."""
    import stat

    import torch

    from vaswani_hf import VaswaniForConditionalGeneration

    torch.manual_seed(0)
    previous = os.umask(umask)
    try:
        save_model_dir(VaswaniForConditionalGeneration(tiny_config()), tmp_path / "model")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o777 & ~umask
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in (tmp_path / "model").iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~umask
    assert set(modes.values()) == {0o666 & ~umask}, modes
