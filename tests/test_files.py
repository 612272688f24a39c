"""Tests of vaswani_hf.files: text files read at newlines only, files and folders written atomically."""

import os
import stat

import pytest

from vaswani_hf.files import AtomicDir, read_lines, save_model_dir, write_atomic


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


def write_folder(folder, text: str) -> None:
    (folder / "sub").mkdir()
    (folder / "sub" / "file.txt").write_text(text)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_an_atomic_folder_appears_whole_with_the_permissions_of_the_users_umask(tmp_path, umask):
    target = tmp_path / "parent" / "folder"  # missing parents are made
    previous = os.umask(umask)
    try:
        with AtomicDir(target) as folder:
            assert folder.parent == target.parent and folder.name.startswith(".tmp-folder-")
            write_folder(folder, "new")
            assert not target.exists()  # nothing under the final name before the block ends
    finally:
        os.umask(previous)
    assert (target / "sub" / "file.txt").read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's 0700
    assert [child.name for child in target.parent.iterdir()] == ["folder"]


def test_an_atomic_folder_that_fails_leaves_the_old_one_and_no_temporary(tmp_path):
    target = tmp_path / "folder"
    with AtomicDir(target) as folder:
        write_folder(folder, "old")
    with pytest.raises(KeyboardInterrupt), AtomicDir(target, replace=True) as folder:
        write_folder(folder, "new")
        raise KeyboardInterrupt  # as if the user stopped the write halfway
    assert (target / "sub" / "file.txt").read_text() == "old"
    assert [child.name for child in tmp_path.iterdir()] == ["folder"]


def test_an_atomic_folder_replaces_an_existing_one_only_when_asked(tmp_path):
    target = tmp_path / "folder"
    with AtomicDir(target) as folder:
        write_folder(folder, "old")
    with pytest.raises(FileExistsError, match="folder already exists"), AtomicDir(target) as folder:
        write_folder(folder, "new")
    assert (target / "sub" / "file.txt").read_text() == "old"
    with AtomicDir(target, replace=True) as folder:
        write_folder(folder, "new")
    assert (target / "sub" / "file.txt").read_text() == "new"
    assert [child.name for child in tmp_path.iterdir()] == ["folder"]  # the old one deleted, not left aside


def test_an_atomic_folder_under_a_fixed_name_clears_a_leftover_and_publishes_step_by_step(tmp_path):
    """The steps that writers spread over several processes call one by one (checkpoints): a fixed temporary name
    that every process knows, a leftover of that name (from a killed write) cleared first."""
    temporary = tmp_path / ".tmp-folder"
    temporary.mkdir()
    (temporary / "stale.txt").write_text("from a killed write")
    writer = AtomicDir(tmp_path / "folder", temporary=temporary)
    assert writer.create() == temporary and list(temporary.iterdir()) == []
    write_folder(temporary, "new")
    assert writer.publish() == tmp_path / "folder"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "folder",
        "folder/sub",
        "folder/sub/file.txt",
    ]
    failed = AtomicDir(tmp_path / "other", temporary=temporary)
    write_folder(failed.create(), "partial")
    failed.discard()
    assert [child.name for child in tmp_path.iterdir()] == ["folder"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_model_directory_has_the_permissions_of_the_users_umask(tmp_path, tiny_config, umask):
    """transformers writes model.safetensors readable by its owner alone (0600) and mkdtemp makes a private folder:
    the model directory that save_model_dir publishes follows the umask, as files the user writes do."""
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
