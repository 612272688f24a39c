"""Tests of `vaswani-translate` (vaswani_hf.cli.translate), run as a user runs it: in its own process, offline, on a
tiny randomly initialised model saved in a temporary folder."""

import pytest
from conftest import FAST_DECODING_ARGS, SCRIPT_SOURCES, ScriptRuns, finished, run_scripts, save_tiny_model

from vaswani_hf.files import read_lines

STDIN_LINES = ["", SCRIPT_SOURCES[0], "", SCRIPT_SOURCES[3]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> ScriptRuns:
    """Runs every `vaswani-translate` call of this file, all at once (see `run_scripts`)."""
    root = tmp_path_factory.mktemp("translate")
    model_dir = save_tiny_model(root / "model")
    src = root / "test.en"
    src.write_text("".join(line + "\n" for line in SCRIPT_SOURCES), encoding="utf-8")
    translations = root / "translations" / "hyp.de"
    translations.parent.mkdir()

    # name: (script and arguments, working folder, stdin)
    calls = {
        "translate_file": (
            ["translate", model_dir, "--input", src, "--output", translations, "--max-tokens", 8, *FAST_DECODING_ARGS],
            root,
            None,
        ),
        "translate_stdin": (
            ["translate", model_dir, *FAST_DECODING_ARGS],
            root,
            "".join(f"{line}\n" for line in STDIN_LINES),
        ),
    }
    return run_scripts(root, model_dir, calls)


def test_translate_file(runs):
    finished(runs, "translate_file")
    output = read_lines(runs.root / "translations" / "hyp.de")
    assert output == runs.translations(SCRIPT_SOURCES)
    assert output[2] == ""


def test_translate_stdin_to_stdout(runs):
    output = finished(runs, "translate_stdin").stdout.split("\n")
    assert output[-1] == "" and output[:-1] == runs.translations(STDIN_LINES)
    assert output[0] == output[2] == "" and output[1] and output[3]
