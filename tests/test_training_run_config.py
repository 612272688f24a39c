"""Run configs: presets parse and match the paper, overrides apply, typos and bad values are errors."""

import pytest

from vaswani_hf import VaswaniConfig
from vaswani_hf.training.run_config import (
    ALL,
    RANGES,
    RESUMABLE,
    SETTINGS,
    RunConfig,
    TrainArgs,
    describe_settings,
    presets,
)


def test_presets_exist_and_load():
    assert {"base", "big", "small-cpu"} <= set(presets())
    for name in presets():
        RunConfig.load(name)


def test_paper_presets_follow_the_paper():
    base, big = RunConfig.load("base"), RunConfig.load("big")
    for cfg in (base, big):
        assert cfg.train.update_tokens == 25000 and cfg.train.warmup_steps == 4000 and cfg.train.lr_scale == 1.0
        assert cfg.train.mixed_precision == "no" and cfg.train.clip_norm is None
        assert cfg.checkpoint.every_minutes == 10 and cfg.model.overrides() == {}
        assert cfg.train.label_smoothing == 0.1  # §5.4
    assert base.model.preset == "base" and base.train.max_steps == 100000 and base.checkpoint.average_last == 5
    assert big.model.preset == "big" and big.train.max_steps == 300000 and big.checkpoint.average_last == 20


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: x\nmodel:\n  d_model: 128\ntrain:\n  lr_scale: 2\n")
    cfg = RunConfig.load(path, ["train.lr_scale=0.5", "model.norm_first=true", "train.clip_norm=null"])
    assert cfg.output_dir == "x" and cfg.model.d_model == 128 and cfg.train.lr_scale == 0.5
    assert cfg.model.overrides() == {"d_model": 128, "norm_first": True}
    VaswaniConfig.base(**cfg.model.overrides())


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr_scal=2", "Unknown run-config key 'train.lr_scal'. Did you mean 'train.lr_scale'"),
        ("trian.lr_scale=2", "Unknown run-config key 'trian'"),
        ("train.max_tokens=abc", "train.max_tokens must be int"),
        ("train.max_steps=true", "train.max_steps must be int or null"),
        ("train.mixed_precision=fp8", "train.mixed_precision must be one of"),
        ("train.warmup_steps=0", "train.warmup_steps must be positive"),
        ("model.preset=huge", "model.preset must be one of"),
        ("lr=1", "Unknown run-config key 'lr'"),
        ("train=3", "train must be a mapping"),
        ("data.tgt_lang=en", "both 'en'"),
        ("novalue", "section.key=value"),
        # NaN and infinity in every spelling YAML and Python give them: a NaN budget would train forever.
        ("train.max_minutes=.nan", "train.max_minutes must be a finite number"),
        ("train.lr_scale=.nan", "train.lr_scale must be a finite number"),
        ("train.lr_scale=nan", "train.lr_scale must be a finite number"),
        ("train.clip_norm=.inf", "train.clip_norm must be a finite number"),
        ("checkpoint.every_minutes=-inf", "checkpoint.every_minutes must be a finite number"),
        ("data.max_ratio=Infinity", "data.max_ratio must be a finite number"),
        ("train.max_steps=2.5", "train.max_steps must be int or null"),
    ],
)
def test_bad_configs_are_errors(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        RunConfig.load("base", [override])


@pytest.mark.parametrize(
    "override, key, expected",
    [
        # YAML 1.1 reads 5e-4 (no dot) as a string: a number in every common notation is still a number.
        ("train.lr_scale=5e-4", "train.lr_scale", 5e-4),
        ("train.lr_scale=5.0e-4", "train.lr_scale", 5e-4),
        ("train.lr_scale=1E+3", "train.lr_scale", 1000.0),
        ("train.max_minutes=20", "train.max_minutes", 20.0),
        ("train.max_steps=1e5", "train.max_steps", 100000),
        ("train.max_steps=100_000", "train.max_steps", 100000),
    ],
)
def test_numbers_in_any_notation(override, key, expected):
    value = RunConfig.load("base", [override]).to_flat_dict()[key]
    assert value == expected and type(value) is type(expected)


def test_numbers_in_a_yaml_file_read_the_same(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr_scale: 5e-4\n  max_steps: 1e3\n")
    cfg = RunConfig.load(path)
    assert cfg.train.lr_scale == 5e-4 and cfg.train.max_steps == 1000


def test_a_run_needs_a_budget():
    with pytest.raises(ValueError, match="at least one of"):
        RunConfig.load("base", ["train.max_steps=null"])


def test_unknown_preset_or_missing_file():
    with pytest.raises(FileNotFoundError, match="presets: .*base"):
        RunConfig.load("tiny")


def test_yaml_round_trip(tmp_path):
    cfg = RunConfig.load("small-cpu", ["train.seed=7"])
    path = tmp_path / "saved.yaml"
    path.write_text(cfg.to_yaml())
    assert RunConfig.load(path) == cfg


def test_flat_dict_keys_are_override_keys():
    config = RunConfig.load("small-cpu")
    flat = config.to_flat_dict()
    assert flat["model.d_model"] == 256 and flat["output_dir"] == config.output_dir
    assert (
        RunConfig.load("small-cpu", [f"{key}={value}" for key, value in flat.items() if value is not None]) == config
    )


@pytest.mark.parametrize(("saved", "expected"), [("null", 0.1), ("0.2", 0.2)])
def test_run_configs_saved_with_model_label_smoothing_still_load(tmp_path, saved, expected):
    """Label smoothing moved from `model` (the architecture) to `train` (the loss): older run_config.yaml files load."""
    path = tmp_path / "run_config.yaml"
    path.write_text(f"model:\n  d_model: 128\n  label_smoothing: {saved}\n")
    cfg = RunConfig.load(path)
    assert cfg.train.label_smoothing == expected and cfg.model.overrides() == {"d_model": 128}


def test_label_smoothing_out_of_range_is_an_error():
    with pytest.raises(ValueError, match=r"train.label_smoothing must be in \[0, 1\)"):
        RunConfig.load("base", ["train.label_smoothing=1.0"])


def test_every_setting_is_one_described_record():
    """Each key's facts come from its `setting(...)`: help for --help, a known range, a model-card rule."""
    assert set(SETTINGS) == set(RunConfig().to_flat_dict())
    for key, s in SETTINGS.items():
        assert s.help and not s.help.endswith("."), key
        assert s.valid is None or s.valid in RANGES, key
        assert s.compared in ("preset", "model", "corpus"), key
        # The card states a difference either against a paper section or as an aside with its reason, never both.
        assert not (s.paper and s.aside), key
        assert set(s.architectures) <= set(ALL), key
    assert SETTINGS["train.warmup_steps"].default == TrainArgs().warmup_steps


def test_a_resumed_run_may_change_only_how_long_and_how_often():
    assert RESUMABLE == {
        "output_dir", "model.attn_implementation", "data.validation", "data.bleu_sentences", "train.max_steps",
        "train.max_epochs", "train.max_minutes", "train.log_every", "checkpoint.every_minutes",
        "checkpoint.every_steps", "checkpoint.keep", "checkpoint.average_last", "eval.every_steps",
        "eval.num_beams", "eval.max_tokens",
    }  # fmt: skip
    saved = RunConfig.load("small-cpu")
    resumed = RunConfig.load("small-cpu", ["train.max_minutes=99", "train.lr_scale=3", "eval.num_beams=2"])
    assert resumed.resume_conflicts(saved) == {"train.lr_scale": (saved.train.lr_scale, 3.0)}


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.bleu_sentences=-1", "data.bleu_sentences must be >= 0, got -1: validation sentences"),
        ("train.weight_decay=-0.1", "train.weight_decay must be >= 0"),
        ("train.label_smoothing=-0.1", r"train.label_smoothing must be in \[0, 1\)"),
        ("checkpoint.keep=0", "checkpoint.keep must be positive, got 0: checkpoints kept on disk"),
    ],
)
def test_each_range_is_checked_from_its_record(override, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.load("base", [override])


def test_help_lists_every_key_with_its_default():
    text = describe_settings()
    for key in SETTINGS:
        assert f"{key}=" in text, key
    assert "train.warmup_steps=4000  warm-up updates of Eq. 3; valid: > 0" in text
    assert "train.max_minutes=null" in text and "may change on --resume" in text
    assert "model.cell=null  the recurrent cell; architecture rnn" in text
