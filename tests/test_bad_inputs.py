"""Inputs as they come from users and the web: stray carriage returns, byte-order marks, wrong paths, a missing
optional package, YAML's reading of `no`. Each is read as meant or refused with a message that says what to do."""

import importlib.util
import os
import sys

import pytest
import transformers

from vaswani_hf.data.parallel import read_aligned_text, read_jsonl, read_tsv
from vaswani_hf.evaluation import load_model, score
from vaswani_hf.files import read_lines
from vaswani_hf.training.run_config import RunConfig

LANGS = dict(src_lang="en", tgt_lang="de")
BOM = "\ufeff".encode()


def rows(ds) -> list[tuple[str, str]]:
    return [(pair["en"], pair["de"]) for pair in ds["translation"]]


def load_command(name: str):
    """A command's module (`vaswani_hf.cli.<name>`), run in this process: its `main(argv)` then raises SystemExit
    instead of exiting."""
    return importlib.import_module(f"vaswani_hf.cli.{name}")


# ------------------------------------------------------------------------------------ a lone \r is not a line break


def test_lone_carriage_return_stays_in_its_line_of_aligned_text(tmp_path):
    # One stray \r on each side: split there, both files would have 3 lines and every pair after it would be shifted.
    (tmp_path / "a.en").write_bytes(b"one\rbis\ntwo\r\nthree\n")
    (tmp_path / "a.de").write_bytes(b"eins\r\nzwei\rbis\ndrei\n")
    ds = read_aligned_text(tmp_path / "a.en", tmp_path / "a.de", **LANGS)
    assert rows(ds) == [("one\rbis", "eins"), ("two", "zwei\rbis"), ("three", "drei")]


def test_lone_carriage_return_stays_in_its_line_of_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_bytes(b"a\tb\rc\r\nhouse\tHaus\n")
    assert rows(read_tsv(tsv, **LANGS)) == [("a", "b\rc"), ("house", "Haus")]
    # \r is JSON whitespace; ending the line there would cut the object in two.
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_bytes(b'{"en": "a",\r"de": "b"}\r\n{"en": "house", "de": "Haus"}\n')
    assert rows(read_jsonl(jsonl, **LANGS)) == [("a", "b"), ("house", "Haus")]


def test_read_lines_keeps_a_lone_carriage_return(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(b"one\rbis\r\ntwo\n")
    assert read_lines(path) == ["one\rbis", "two"]


# ------------------------------------------------------------------------------------------- a byte-order mark


def test_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    for name, data in [("t.txt", b"the house\nis small\n"), ("a.en", b"one\n"), ("a.de", b"eins\n")]:
        (tmp_path / name).write_bytes(BOM + data)
    assert read_lines(tmp_path / "t.txt") == ["the house", "is small"]
    assert rows(read_aligned_text(tmp_path / "a.en", tmp_path / "a.de", **LANGS)) == [("one", "eins")]


def test_byte_order_mark_on_one_side_scores_100(tmp_path):
    sentences = ["the house is small .", "the cat sleeps on the mat ."]
    text = "".join(f"{line}\n" for line in sentences).encode()
    (tmp_path / "hyp").write_bytes(text)
    (tmp_path / "ref").write_bytes(BOM + text)
    assert score(read_lines(tmp_path / "hyp"), read_lines(tmp_path / "ref"))["bleu"] == pytest.approx(100)


def test_byte_order_mark_on_standard_input_is_dropped():
    # vaswani-translate reads standard input through read_lines(sys.stdin.fileno()).
    read_end, write_end = os.pipe()
    os.write(write_end, BOM + b"the house\r\nis\rsmall\n")
    os.close(write_end)
    assert read_lines(read_end) == ["the house", "is\rsmall"]
    os.close(read_end)  # read_lines leaves a descriptor it is given open


# ------------------------------------------------------------------------------------------ paths that hold no model


def test_load_model_names_a_missing_local_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*missing' does not exist: give the folder of a saved model"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"holds no config\.json"):
        load_model(tmp_path)


def test_load_model_leaves_hub_repo_ids_to_transformers(monkeypatch, tmp_path):
    class Reached(Exception):
        pass

    def from_pretrained(name, **kwargs):
        raise Reached(name)

    monkeypatch.chdir(tmp_path)  # no local folder of that name
    monkeypatch.setattr(transformers.AutoModelForSeq2SeqLM, "from_pretrained", from_pretrained)
    for repo_id in ("someone/model", "model"):
        with pytest.raises(Reached, match=repo_id):
            load_model(repo_id)


@pytest.mark.parametrize("script", ["translate", "evaluate"])
def test_scripts_name_a_missing_model_folder(script, tmp_path):
    text = tmp_path / "test.en"
    text.write_text("the house is small\n", encoding="utf-8")
    missing = str(tmp_path / "outputs" / "run" / "model")
    argv = (
        [missing, "--input", str(text)] if script == "translate" else [missing, "--src", str(text), "--ref", str(text)]
    )
    with pytest.raises(SystemExit) as exit_info:
        load_command(script).main([*argv, "--no-progress"])
    message = str(exit_info.value.code)
    assert message.startswith(f"error: model_dir '{missing}' does not exist") and "\n" not in message
    assert "vaswani-train" in message


def test_export_script_without_ctranslate2_says_how_to_install_it(monkeypatch):
    # As if ctranslate2 were not installed: None in sys.modules makes `import ctranslate2` fail.
    for name in [name for name in sys.modules if name.startswith("ctranslate2.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    monkeypatch.delitem(sys.modules, "vaswani_hf.export.ctranslate2", raising=False)
    monkeypatch.delitem(sys.modules, "vaswani_hf.cli.export_ct2", raising=False)
    command = load_command("export_ct2")
    with pytest.raises(SystemExit) as help_exit:  # --help answers without the package, exit status 0
        command.main(["--help"])
    assert help_exit.value.code == 0
    with pytest.raises(SystemExit) as exit_info:
        command.main(["model", "--output-dir", "out"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "pip install 'vaswani_hf[ctranslate2]'" in message
    assert "\n" not in message


# ------------------------------------------------------------------------------- overrides read as their field's type


def test_overrides_are_read_as_the_type_of_their_field():
    # YAML alone reads `no` as False and `123` as an int; these fields hold strings.
    config = RunConfig.load("small-cpu", ["train.mixed_precision=no", "data.src_lang=no", "data.corpus=123"])
    assert config.train.mixed_precision == "no" and config.data.src_lang == "no" and config.data.corpus == "123"
    # Text that is not YAML at all (@ is reserved) is still a str for a str field.
    assert RunConfig.load("small-cpu", ["data.corpus=@corpus"]).data.corpus == "@corpus"
    # Numbers, booleans and null still parse as before.
    config = RunConfig.load(
        "small-cpu",
        ["train.clip_norm=null", "model.norm_first=true", "train.lr_scale=0.5", "data.tokenizer=", "train.seed=3"],
    )
    assert config.train.clip_norm is None and config.model.norm_first is True and config.train.lr_scale == 0.5
    assert config.data.tokenizer is None and config.train.seed == 3
    with pytest.raises(ValueError, match="train.seed must be int, got 'three'"):
        RunConfig.load("small-cpu", ["train.seed=three"])
    with pytest.raises(ValueError, match=r"train.max_tokens must be int, got '\[1'"):
        RunConfig.load("small-cpu", ["train.max_tokens=[1"])


def test_unquoted_no_in_a_yaml_file_is_explained(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  mixed_precision: no\n", encoding="utf-8")
    with pytest.raises(ValueError, match="got False.*write it in quotes"):
        RunConfig.load(path)
    path.write_text("train:\n  mixed_precision: 'no'\n", encoding="utf-8")
    assert RunConfig.load(path).train.mixed_precision == "no"


# -------------------------------------------------------------------- outputs and limits checked before the work


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from conftest import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.mark.parametrize("where", ["folder", "unwritable"])
def test_translate_refuses_an_unusable_output_before_loading_the_model(tiny_model_dir, tmp_path, monkeypatch, where):
    """`--output` that is a folder, or in a folder that cannot be written, is found before the model is loaded or a
    sentence translated, not after all of them."""
    (tmp_path / "in.txt").write_text("the house\n")
    if where == "folder":
        output, expected = tmp_path, "is a folder"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        if os.access(locked, os.W_OK):  # root writes anywhere: the permission check cannot be shown
            pytest.skip("running as a user who can write in any folder")
        output, expected = locked / "out.txt", "no permission to write"
    monkeypatch.setattr("vaswani_hf.evaluation.load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SystemExit, match=expected):
        load_command("translate").main(
            [str(tiny_model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(output)]
        )


def test_evaluate_refuses_an_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "src.txt").write_text("a\n")
    (tmp_path / "ref.txt").write_text("a\n")
    (tmp_path / "results").write_text("not a folder")
    argv = ["--copy-baseline", "--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt")]
    with pytest.raises(SystemExit, match="is a file; give a folder"):
        load_command("evaluate").main([*argv, "--output-dir", str(tmp_path / "results")])


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_max_new_tokens_beyond_the_positions_is_refused_before_decoding(
    tiny_model_dir, tmp_path, monkeypatch, command
):
    """The tiny model has 80 positions: 81 new tokens cannot be decoded, and the commands say so before translating
    anything (it used to fail once a sentence ran that long, losing the work on the others)."""
    import transformers

    (tmp_path / "in.txt").write_text("the house is small\n")
    monkeypatch.setattr(transformers.GenerationMixin, "generate", lambda *a, **k: pytest.fail("decoding started"))
    options = ["--max-new-tokens", "81", "--no-progress"]
    if command == "translate":
        argv = [str(tiny_model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.txt")]
    else:
        argv = [str(tiny_model_dir), "--src", str(tmp_path / "in.txt"), "--ref", str(tmp_path / "in.txt")]
        argv += ["--output-dir", str(tmp_path / "results")]
    with pytest.raises(SystemExit, match=r"max_new_tokens=81 is more than this model can decode.*at most 80"):
        load_command(command).main([*argv, *options])
    assert not (tmp_path / "out.txt").exists()


# ------------------------------------------------------------------------------ files that are not what they should be


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("first line\nsecond line\nM\u00fcller\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt line 3 is not UTF-8 \(byte 0xfc at column 2\).*iconv"):
        read_lines(path)


def test_a_folder_where_a_file_is_expected_is_named(tmp_path):
    with pytest.raises(ValueError, match="is a folder, not a text file"):
        read_lines(tmp_path)


@pytest.mark.parametrize("command", ["translate", "evaluate"])
def test_commands_report_a_file_that_is_not_utf8_in_one_line(tiny_model_dir, tmp_path, command):
    path = tmp_path / "in.txt"
    path.write_bytes("Gr\u00fc\u00dfe\n".encode("latin-1"))
    if command == "translate":
        argv = [str(tiny_model_dir), "--input", str(path), "--no-progress"]
    else:
        argv = [str(tiny_model_dir), "--src", str(path), "--ref", str(path), "--output-dir", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exit_info:
        load_command(command).main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "line 1 is not UTF-8" in message and "\n" not in message


@pytest.mark.parametrize("columns", [3, 4])
def test_a_tsv_corpus_with_more_than_two_columns_is_refused_not_cut(tmp_path, columns):
    path = tmp_path / "pairs.tsv"
    path.write_text("house\tHaus\n" + "\t".join(["a", "b", "c", "d"][:columns]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"line 2: {columns} tab-separated fields where a pair has 2"):
        read_tsv(path, **LANGS)
    # Naming the columns is how a corpus with more fields is read.
    assert rows(read_tsv(path, **LANGS, src_column=1, tgt_column=0)) == [("Haus", "house"), ("b", "a")]


def test_truncated_weights_are_named_in_one_line(tiny_model_dir, tmp_path):
    import shutil

    damaged = tmp_path / "model"
    shutil.copytree(tiny_model_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (tmp_path / "in.txt").write_text("the house\n")
    with pytest.raises(SystemExit) as exit_info:
        load_command("translate").main([str(damaged), "--input", str(tmp_path / "in.txt"), "--no-progress"])
    message = str(exit_info.value.code)
    assert "cannot be read" in message and "damaged or was cut short" in message and "\n" not in message


def test_a_name_that_is_no_folder_is_not_answered_with_internet_advice(tmp_path, monkeypatch):
    """A bare name that is no folder here (a typo of a local folder, most often) says so, and that Hub names need a
    network, instead of transformers' "check your internet connection" alone."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        FileNotFoundError, match=r"'mymodel' is no folder here.*HF_HUB_OFFLINE is set.*needs a network"
    ):
        load_model("mymodel")


# ------------------------------------------------------------------------------ every command: no traceback for a mistake

COMMANDS = [
    "average", "corpus", "evaluate", "export_ct2", "finetune", "main_job", "model_card", "push", "study_recurrence",
    "train", "translate",
]  # fmt: skip


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_ends_a_users_mistake_without_a_traceback(name):
    from vaswani_hf.errors import user_errors

    command = load_command(name)
    assert getattr(command.main, "__wrapped__", None) is not None, f"vaswani_hf.cli.{name}.main is not wrapped"
    assert command.main.__code__ is user_errors(lambda argv: None).__code__


def test_a_mistake_is_one_message_and_debug_shows_the_traceback(monkeypatch):
    """What a wrapped command does with a user's mistake the library reports (here, a missing file): its message in
    the exit, and the exception itself (with its traceback) under VASWANI_DEBUG=1. Other exceptions, bugs, pass."""
    from vaswani_hf.errors import user_errors

    @user_errors
    def main(argv=None):
        raise {"missing": FileNotFoundError("corpus.tsv does not exist"), "bug": KeyError("x")}[argv[0]]

    monkeypatch.delenv("VASWANI_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["missing"])
    assert str(exit_info.value.code).splitlines() == [
        "error: corpus.tsv does not exist",
        "(VASWANI_DEBUG=1 shows where it was raised)",
    ]
    with pytest.raises(KeyError):
        main(["bug"])
    monkeypatch.setenv("VASWANI_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="corpus.tsv does not exist"):
        main(["missing"])


def test_train_help_names_every_preset_and_the_default(capsys, monkeypatch):
    from vaswani_hf.training.run_config import presets

    monkeypatch.setenv("COLUMNS", "200")  # no line break inside a name
    with pytest.raises(SystemExit) as exit_info:
        load_command("train").main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in presets()) and "rnn-cpu" in text and "default: small-cpu" in text


@pytest.mark.parametrize(
    "command, old, new, argv",
    [
        ("evaluate", "--out-dir", "--output-dir", ["--copy-baseline", "--src", "s", "--ref", "r"]),
        ("average", "--output", "--output-dir", ["missing-run", "--last", "1"]),
        ("finetune", "--warmup", "--warmup-steps", ["missing-model", "--train", "t", "--output-dir", "o"]),
    ],
)
def test_an_old_option_spelling_still_works_and_says_its_new_one(tmp_path, command, old, new, argv, capsys):
    """One vocabulary across commands (a folder is --output-dir; a setting has its run-config name): the old spellings
    are accepted for one release, with a warning naming the new one; the new spelling warns of nothing."""
    value = str(tmp_path / "x") if command != "finetune" else "7"
    for spelling in (old, new):
        with pytest.raises(SystemExit):  # each stops later, at the missing input
            load_command(command).main([*argv, spelling, value])
        warning = f"warning: {old} is deprecated and goes in the next release: use {new}"
        assert (warning in capsys.readouterr().err) == (spelling == old)


def test_finetune_names_a_model_folder_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        load_command("finetune").main(["mymodel", "--train", "t.jsonl", "--output-dir", "out"])
    message = str(exit_info.value.code)
    assert message.startswith("error: model_dir 'mymodel' is no folder here") and "\n" not in message
