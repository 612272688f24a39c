"""Tests of `vaswani-translate` (vaswani_hf.cli.translate), run as a user runs it: in its own process, offline, on a
tiny randomly initialised model saved in a temporary folder; and in this process, interrupted and continued, and
reading standard input while it writes."""

import io
import json
import logging
import os
import sys
import threading
import time

import pytest
from conftest import FAST_DECODING_ARGS, SCRIPT_SOURCES, ScriptRuns, finished, run_scripts, save_tiny_model

from vaswani_hf import VaswaniForConditionalGeneration
from vaswani_hf.cli import translate as translate_command
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
            [
                "translate",
                model_dir,
                "--input",
                src,
                "--output",
                translations,
                "--max-tokens",
                8,
                "--window",
                2,
                *FAST_DECODING_ARGS,
            ],  # fmt: skip
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
    assert output == runs.translations(SCRIPT_SOURCES)  # in windows of 2 lines, as in one
    assert output[2] == ""
    assert [child.name for child in (runs.root / "translations").iterdir()] == ["hyp.de"]  # no partial file left


def test_translate_stdin_to_stdout(runs):
    output = finished(runs, "translate_stdin").stdout.split("\n")
    assert output[-1] == "" and output[:-1] == runs.translations(STDIN_LINES)
    assert output[0] == output[2] == "" and output[1] and output[3]


# ---------------------------------------------------------------------------------------------- in this process

LINES = SCRIPT_SOURCES * 3  # 12 lines, 3 of them blank: windows of 3 hold 2 or 3 sentences to decode


def generate_counted(monkeypatch, interrupt_at: int | None = None) -> list[int]:
    """The number of sentences of each `generate` call of the model, with Ctrl-C (KeyboardInterrupt) at call
    `interrupt_at`."""
    sizes = []
    generate = VaswaniForConditionalGeneration.generate

    def counted(self, **kwargs):
        if len(sizes) + 1 == interrupt_at:
            raise KeyboardInterrupt
        sizes.append(kwargs["input_ids"].shape[0])
        return generate(self, **kwargs)

    monkeypatch.setattr(VaswaniForConditionalGeneration, "generate", counted)
    return sizes


@pytest.fixture
def interrupted(runs, tmp_path, monkeypatch):
    """`vaswani-translate` of `LINES` in windows of 3, run to the end into `reference.de` and stopped by Ctrl-C in
    its third window into `out.de`; returns the arguments of both runs but --output."""
    src = tmp_path / "in.en"
    src.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    argv = [str(runs.model_dir), "--input", str(src), "--window", "3", *FAST_DECODING_ARGS]
    translate_command.main([*argv, "--output", str(tmp_path / "reference.de")])
    generate_counted(monkeypatch, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        translate_command.main([*argv, "--output", str(tmp_path / "out.de")])
    monkeypatch.undo()
    return argv


def test_an_interrupted_translation_is_continued_by_the_same_command(interrupted, tmp_path, monkeypatch, caplog):
    output, partial = tmp_path / "out.de", tmp_path / "out.de.partial"
    reference = (tmp_path / "reference.de").read_bytes()
    record = json.loads((tmp_path / "out.de.partial.json").read_text(encoding="utf-8"))
    assert not output.exists() and record["lines"] == 6
    assert partial.read_bytes() == reference[: record["bytes"]]
    with partial.open("ab") as file:
        file.write(reference[record["bytes"] :][:3])  # a kill in the middle of the next window's write

    sizes = generate_counted(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="vaswani_hf.evaluation"):
        translate_command.main([*interrupted, "--output", str(output)])
    assert sum(sizes) == sum(bool(line.strip()) for line in LINES[6:])  # the first six lines are not translated again
    assert output.read_bytes() == reference
    assert not partial.exists() and not (tmp_path / "out.de.partial.json").exists()
    assert "out.de.partial holds the first 6 lines of an interrupted run" in caplog.text


def test_an_interrupted_translation_with_other_options_is_refused_until_restarted(interrupted, tmp_path, monkeypatch):
    argv = [*interrupted, "--output", str(tmp_path / "out.de")]
    before = (tmp_path / "out.de.partial").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        translate_command.main([*argv, "--max-new-tokens", "4"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert (
        "first 6 lines of an interrupted run that differs from this one in decoding (max_new_tokens 5 then, 4 now)"
        in message
    )
    assert "--restart" in message
    assert (tmp_path / "out.de.partial").read_bytes() == before

    sizes = generate_counted(monkeypatch)
    translate_command.main([*argv, "--max-new-tokens", "4", "--restart"])
    assert sum(sizes) == sum(bool(line.strip()) for line in LINES)
    assert len(read_lines(tmp_path / "out.de")) == len(LINES) and not (tmp_path / "out.de.partial").exists()


def test_a_partial_file_the_command_did_not_write_is_left_alone(runs, tmp_path):
    (tmp_path / "in.en").write_text("the house is small\n", encoding="utf-8")
    (tmp_path / "out.de.partial").write_text("a user's notes\n", encoding="utf-8")
    argv = [str(runs.model_dir), "--input", str(tmp_path / "in.en"), "--output", str(tmp_path / "out.de")]
    with pytest.raises(SystemExit) as exit_info:
        translate_command.main([*argv, *FAST_DECODING_ARGS])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "exists without a progress record" in message and "\n" not in message
    assert (tmp_path / "out.de.partial").read_text(encoding="utf-8") == "a user's notes\n"
    assert not (tmp_path / "out.de").exists()


def test_restart_needs_an_output_file(capsys):
    with pytest.raises(SystemExit) as exit_info:
        translate_command.parse_args(["model", "--restart"])
    assert exit_info.value.code == 2 and "--restart goes with --output" in capsys.readouterr().err


def test_translations_to_standard_output_appear_window_by_window(runs, monkeypatch):
    """Standard input is a pipe that sends the first window, then waits for its translations on standard output
    before sending the rest: the command must write each window before it reads the next."""
    read_end, write_end = os.pipe()
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_end, "rb"))
    monkeypatch.setattr(sys, "stdout", stdout)
    first_window_out = threading.Event()

    def feed():
        os.write(write_end, "".join(line + "\n" for line in LINES[:2]).encode())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not first_window_out.is_set():
            if stdout.buffer.getvalue().count(b"\n") == 2:
                first_window_out.set()
            time.sleep(0.01)
        os.write(write_end, "".join(line + "\n" for line in LINES[2:]).encode())
        os.close(write_end)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        translate_command.main([str(runs.model_dir), "--window", "2", *FAST_DECODING_ARGS])
    finally:
        feeder.join()
        sys.stdin.close()
    assert first_window_out.is_set()
    assert stdout.buffer.getvalue().decode().split("\n") == [*runs.translations(LINES), ""]
