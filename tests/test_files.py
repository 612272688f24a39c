"""Tests of vaswani_hf.files: text files read at newlines only, files and folders written atomically, files written
piece by piece that a rerun continues."""

import json
import os
import stat

import pytest

from vaswani_hf.files import AtomicDir, PartialFile, read_lines, save_model_dir, write_atomic


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


IDENTITY = {"input": {"lines": 3, "sha256": "ab" * 32}, "settings": (1, 2)}


def interrupted(target, identity, line: str) -> None:
    """A `PartialFile` run that writes one line and is stopped by Ctrl-C."""
    with pytest.raises(KeyboardInterrupt), PartialFile(target, identity) as partial:
        partial.append(line, 1)
        raise KeyboardInterrupt


def test_a_partial_file_appears_under_its_name_only_when_complete(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("an earlier output\n")
    with PartialFile(target, IDENTITY, notes={"max_tokens": 8}) as partial:
        assert partial.lines == 0
        partial.append("eins\nzwei\n", 2)
        record = json.loads((tmp_path / "out.txt.partial.json").read_text())
        assert (record["lines"], record["bytes"], record["notes"]) == (2, 10, {"max_tokens": 8})
        assert record["identity"] == {"input": IDENTITY["input"], "settings": [1, 2]}
        assert (tmp_path / "out.txt.partial").read_text() == "eins\nzwei\n"
        assert target.read_text() == "an earlier output\n"  # replaced only at the end
        partial.append("drei\n", 1)
    assert target.read_text() == "eins\nzwei\ndrei\n"
    assert sorted(child.name for child in tmp_path.iterdir()) == ["out.txt"]


def test_a_partial_file_is_continued_after_what_its_record_counts(tmp_path):
    target = tmp_path / "out.txt"
    interrupted(target, IDENTITY, "eins\n")
    with (tmp_path / "out.txt.partial").open("ab") as file:
        file.write(b"zw")  # a write a kill cut short, which the record does not count
    with PartialFile(target, IDENTITY) as partial:
        assert (partial.lines, partial.bytes) == (1, 5)
        partial.append("zwei\n", 1)
    assert target.read_text() == "eins\nzwei\n"


def test_a_partial_file_of_another_run_or_of_nobody_is_left_as_it_is(tmp_path):
    target = tmp_path / "out.txt"
    partial_path, record_path = tmp_path / "out.txt.partial", tmp_path / "out.txt.partial.json"
    interrupted(target, IDENTITY, "eins\n")
    other = {**IDENTITY, "settings": (1, 3)}
    with pytest.raises(ValueError, match=r"first 1 lines of an interrupted run that differs from this one in settings "
                                         r"\(\[1, 2\] then, \[1, 3\] now\).*--restart"):  # fmt: skip
        PartialFile(target, other).__enter__()
    with pytest.raises(ValueError, match="this run's input cannot be read again"):
        PartialFile(target, None).__enter__()

    partial_path.write_text("eins\n"[:3])  # shorter than its record counts: changed by someone
    with pytest.raises(ValueError, match="has 3 bytes, fewer than the 5 its record counts"):
        PartialFile(target, IDENTITY).__enter__()

    record_path.unlink()  # a user's file of that name, or a record deleted
    with pytest.raises(FileExistsError, match="exists without a progress record"):
        PartialFile(target, IDENTITY).__enter__()
    assert partial_path.read_text() == "ein"
    record_path.write_text('{"lines": 3}')
    with pytest.raises(FileExistsError, match="is not a progress record of this package"):
        PartialFile(target, IDENTITY).__enter__()
    assert partial_path.read_text() == "ein" and record_path.read_text() == '{"lines": 3}'

    with PartialFile(target, other, restart=True) as partial:
        assert partial.lines == 0
        partial.append("neu\n", 1)
    assert target.read_text() == "neu\n" and not partial_path.exists() and not record_path.exists()
    # A refused call leaves no partial file of its own.
    (tmp_path / "other.txt.partial.json").write_text("not a record")
    with pytest.raises(FileExistsError, match="is not a progress record"):
        PartialFile(tmp_path / "other.txt", IDENTITY).__enter__()
    assert not (tmp_path / "other.txt.partial").exists()


def test_a_partial_file_starts_afresh_when_it_cannot_be_continued(tmp_path):
    target = tmp_path / "out.txt"
    # A run over an input that cannot be read again (identity None), interrupted: its leftovers are discarded.
    interrupted(target, None, "eins\n")
    with PartialFile(target, IDENTITY) as partial:
        assert partial.lines == 0
        partial.append("zwei\n", 1)
    assert target.read_text() == "zwei\n"
    # A kill after the partial file became the target, before its record was removed: the record alone is left.
    interrupted(target, IDENTITY, "drei\n")
    os.replace(tmp_path / "out.txt.partial", target)
    with PartialFile(target, IDENTITY) as partial:
        assert partial.lines == 0
        partial.append("vier\n", 1)
    assert target.read_text() == "vier\n"


def test_a_second_writer_of_a_partial_file_is_refused(tmp_path):
    pytest.importorskip("fcntl")
    target = tmp_path / "out.txt"
    with PartialFile(target, IDENTITY) as partial:
        partial.append("eins\n", 1)
        with pytest.raises(FileExistsError, match="another process is writing"):
            PartialFile(target, IDENTITY).__enter__()
        partial.append("zwei\n", 1)
    assert target.read_text() == "eins\nzwei\n"


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
