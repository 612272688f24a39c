"""Tests of `vaswani-corpus` (vaswani_hf.cli.corpus), which builds the default corpus: on tiny fake packages, no
apt."""

import pytest

from vaswani_hf.cli import corpus as corpus_command


def test_cli_reports_missing_apt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        corpus_command.main(["--cache-dir", str(tmp_path)])
    assert exit_info.value.code == 1
    assert "error: the default corpus is built from Debian packages" in capsys.readouterr().err


def test_cli_prints_split_sizes(tmp_path, fake_corpus_fetch, capsys):
    corpus_command.main(["--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert str(tmp_path / "default_corpus-v1") in out
    assert "test_dictionary:      2 pairs (help 0, dictionary 2)" in out
