"""Tests of vaswani_hf.files: text files read at newlines only, and written atomically."""

from vaswani_hf.files import read_lines, write_atomic


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
