"""transformers' own common model tests on our model: `ModelTesterMixin` (tests/test_modeling_common.py) and
`ConfigTester` (tests/test_configuration_common.py) of the transformers source distribution, run on `VaswaniModel`
and `VaswaniForConditionalGeneration` the way transformers' tests/models/marian/test_modeling_marian.py runs them on
Marian. They are the checks every model in transformers passes: saving and loading, tied weights, resizing embeddings,
attention backends, output shapes, gradient checkpointing, initialisation, meta-device construction...

The tests are not in the transformers wheel, so the source distribution of the INSTALLED version is fetched once with
pip and cached (see `fetch_sdist`); where it cannot be fetched, the whole module is skipped and says how to fetch it.
They also need `parameterized`, a test dependency of transformers.

    HF_HUB_OFFLINE=1 pytest -p no:cacheprovider tests/test_transformers_common.py -q

The same harness runs on transformers' own Marian as a reference, only on request:

    VASWANI_COMMON_TESTS_MARIAN=1 HF_HUB_OFFLINE=1 pytest -p no:cacheprovider tests/test_transformers_common.py -q -k Marian
"""

import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
import types
import unittest
import warnings
from pathlib import Path
from unittest import mock

import pytest
import torch
import transformers
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.testing_utils import torch_device

# test_modeling_common parameterises its tests with this package, a test dependency of transformers.
pytest.importorskip(
    "parameterized", reason="transformers' common tests need `parameterized` (pip install parameterized)"
)

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration, VaswaniModel  # noqa: E402

VERSION = transformers.__version__
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vaswani_hf" / "transformers-sdist"
# The sdist's tests/ folder is imported as a package of this name: it cannot be imported as `tests`, the name of our own
# test folder (a namespace package here, as is the sdist's, so the two would merge or shadow each other).
PACKAGE = "_transformers_sdist_tests"
RUN_MARIAN = os.environ.get("VASWANI_COMMON_TESTS_MARIAN") == "1"

# Tests of the mixins that we skip ourselves, and why. Only features the model does not have, or pieces that the
# sdist does not ship; a test that fails on a bug in the model is never listed here.
SKIPPED = {
    # tests/generation/test_utils.py is not in the sdist, so GenerationTesterMixin is a stub (see STUBS) and the
    # generate() tests cannot run; this test only checks that the test class inherits that mixin.
    "test_generation_tester_mixin_inheritance": "GenerationTesterMixin is not in the transformers sdist (stubbed)",
}


# The models are tiny: one thread runs these tests about three times faster than two.
pytestmark = pytest.mark.usefixtures("one_thread")


class SdistUnavailable(RuntimeError):
    pass


def extract_data(tar: tarfile.TarFile, target: Path) -> None:
    """Extracts files and folders only, each inside `target` (the "data" filter). Python added that filter in 3.12
    and in the security releases 3.10.12 and 3.11.4; on earlier ones (Debian 12's 3.11.2) the members are checked
    here instead."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    for member in tar.getmembers():
        inside = os.path.realpath(target / member.name).startswith(os.path.realpath(target) + os.sep)
        if not (member.isfile() or member.isdir()) or not inside:
            raise tarfile.TarError(
                f"{tar.name}: refusing {member.name!r}, not a plain file or folder inside the archive"
            )
    tar.extractall(target)


def fetch_sdist(version: str = VERSION) -> Path:
    """The root of the extracted transformers-<version> sdist: from the cache, or downloaded with pip and extracted
    into it. Extraction goes to a temporary folder renamed into place, so a concurrent or interrupted run never leaves
    a half-extracted tree where the next run would take it for complete."""
    root = CACHE / version
    # Written last before the rename, so it also marks a complete tree.
    marker = root / "tests" / "__init__.py"
    if marker.is_file():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix=f".{version}-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
        command += [f"transformers=={version}", "-d", tmp]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            done = None
        archives = sorted(Path(tmp).glob("transformers-*.tar.gz"))
        if done is None or done.returncode or not archives:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] if done else ["timed out after 300 s"]
            shown = " ".join(["python", *command[1:-1], "<dir>"])
            raise SdistUnavailable(
                f"transformers' common model tests come from the transformers {version} sdist, which `{shown}` "
                f"could not fetch: {' '.join(detail)}"
            )
        extracted = Path(tmp) / "extracted"
        with tarfile.open(archives[0]) as tar:
            extract_data(tar, extracted)
        (top,) = extracted.iterdir()  # transformers-<version>/
        # transformers' tests/ is a package whose __init__.py is empty; the sdist leaves that file out, yet
        # test_configuration_common loads it (`direct_transformers_import(Path(__file__).parent)`).
        (top / "tests" / "__init__.py").touch()
        try:
            top.rename(root)
        except OSError:
            # Another run extracted it first: theirs is as good.
            if not marker.is_file():
                raise
    return root


# Modules that the sdist's test_modeling_common.py and test_configuration_common.py import but the sdist does not
# ship (transformers' MANIFEST leaves these folders of its tests/ out). Module name -> the names it must provide.
STUBS = {
    # ModelTesterMixin derives from ExportTesterMixin, which adds torch.export/ONNX/ExecuTorch tests. Without the real
    # file those tests are absent, not skipped: an empty base class.
    "exporters.test_export": {"ExportTesterMixin": type("ExportTesterMixin", (), {})},
    # Imported only to check in test_generation_tester_mixin_inheritance that the test class inherits it (see
    # SKIPPED); an empty class stands in, and the test class does not inherit it.
    "generation.test_utils": {"GenerationTesterMixin": type("GenerationTesterMixin", (), {})},
    # ConfigTester.check_config_arguments_init sets these PreTrainedConfig arguments to non-default values and checks
    # that the config keeps them: the dict of transformers 5's tests/utils/test_configuration_utils.py.
    "utils.test_configuration_utils": {
        "config_common_kwargs": {
            "return_dict": False,
            "output_hidden_states": True,
            "output_attentions": True,
            "dtype": "float16",
            "chunk_size_feed_forward": 5,
            "architectures": ["BertModel"],
            "id2label": {0: "label"},
            "label2id": {"label": "0"},
            "problem_type": "regression",
        }
    },
}


def import_common_tests(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """test_modeling_common and test_configuration_common of the sdist at `root`, imported as submodules of PACKAGE
    so that their relative imports (`from .test_configuration_common import ...`) resolve inside the sdist, and the
    missing ones to STUBS."""
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(root / "tests")]
        sys.modules[PACKAGE] = package
        for dotted, names in STUBS.items():
            parent = package
            parts = dotted.split(".")
            for depth, part in enumerate(parts):
                name = ".".join([PACKAGE, *parts[: depth + 1]])
                module = sys.modules.get(name)
                if module is None:
                    module = sys.modules[name] = types.ModuleType(name)
                    if depth < len(parts) - 1:
                        module.__path__ = []  # a package, whose only submodules are the stubs
                    setattr(parent, part, module)
                parent = module
            vars(parent).update(names)
    with warnings.catch_warnings():
        # The marks they use (flash_attn_test, torch_compile_test...) are registered by transformers' conftest.py,
        # which is not ours to load: unregistered, each would warn once at import.
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
        configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    return modeling, configuration


try:
    SDIST = fetch_sdist()
except SdistUnavailable as error:
    pytest.skip(str(error), allow_module_level=True)
test_modeling_common, test_configuration_common = import_common_tests(SDIST)
ModelTesterMixin = test_modeling_common.ModelTesterMixin
ConfigTester = test_configuration_common.ConfigTester
ids_tensor = test_modeling_common.ids_tensor


def skip_tests(cls: type, skipped: dict[str, str]) -> type:
    """Replaces each named test of `cls` by one that is skipped with its reason."""
    for name, reason in skipped.items():

        @unittest.skip(reason)
        def skipped_test(self):
            pass

        skipped_test.__name__ = name
        setattr(cls, name, skipped_test)
    return cls


# ---------------------------------------------------------------------------------------------------------------------
# The model tester: a tiny config and random inputs, as MarianModelTester makes them
# ---------------------------------------------------------------------------------------------------------------------
class Seq2SeqModelTester:
    """Tiny config and inputs for an encoder-decoder: 2 + 2 layers, 2 heads, width 16, vocabulary 99, batches of 13
    sequences of 7 tokens. Subclasses give `get_config` and the special token ids."""

    pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id = 0, 1, 2, 1

    def __init__(self, parent: unittest.TestCase, batch_size=13, seq_length=7, is_training=True):
        self.parent = parent
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.encoder_seq_length = self.decoder_seq_length = seq_length
        self.is_training = is_training
        self.vocab_size = 99
        self.hidden_size = 16
        self.num_hidden_layers = 2
        self.num_attention_heads = 2
        self.intermediate_size = 32
        self.max_position_embeddings = 100

    def get_config(self):
        raise NotImplementedError

    def prepare_config_and_inputs(self):
        # Sources of ordinary tokens ending with </s>; decoder inputs anywhere in the vocabulary, <pad> included.
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size).clamp(3)
        input_ids[:, -1] = self.eos_token_id
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        inputs_dict = {
            "input_ids": input_ids,
            "decoder_input_ids": decoder_input_ids,
            "attention_mask": input_ids.ne(self.pad_token_id),
            "decoder_attention_mask": decoder_input_ids.ne(self.pad_token_id),
        }
        return self.get_config(), inputs_dict

    def prepare_config_and_inputs_for_common(self):
        return self.prepare_config_and_inputs()


class VaswaniModelTester(Seq2SeqModelTester):
    def get_config(self) -> VaswaniConfig:
        return VaswaniConfig(
            vocab_size=self.vocab_size,
            d_model=self.hidden_size,
            d_ff=self.intermediate_size,
            num_heads=self.num_attention_heads,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            # As Marian's tester: the tests that compare outputs put the model in eval mode, and the training tests
            # then run with dropout on.
            dropout=0.1,
            attention_dropout=0.1,
            max_position_embeddings=self.max_position_embeddings,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
        )


class VaswaniModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (VaswaniModel, VaswaniForConditionalGeneration)
    is_encoder_decoder = True
    # The mixin skips this test for models whose configuration file has no copyright line of 2023 or later, as a
    # transformers model added before 2023 would have; ours has none and is newer.
    test_can_init_all_missing_weights_before_2023 = True

    @classmethod
    def setUpClass(cls):
        """The mixin tells a base model from a head, and what labels a head takes, by looking the class name up in
        transformers' auto-mapping tables of in-library models (`MODEL_MAPPING_NAMES`...). `AutoModel.register`,
        which `import vaswani_hf` calls, does not add to those tables, so without this every test that trains or
        computes a loss would treat VaswaniModel as a head that returns no loss, or skip our head as none it knows.
        The entries are those an in-library model would have; they are removed after the class."""
        super().setUpClass()
        for table, name in (
            (MODEL_MAPPING_NAMES, VaswaniModel.__name__),
            (MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, VaswaniForConditionalGeneration.__name__),
        ):
            patcher = mock.patch.dict(table, {VaswaniConfig.model_type: name})
            patcher.start()
            cls.addClassCleanup(patcher.stop)

    def setUp(self):
        self.model_tester = VaswaniModelTester(self)
        self.config_tester = ConfigTester(self, config_class=VaswaniConfig)

    def test_config(self):
        self.config_tester.run_common_tests()

    # The model-specific checks of Marian's test class, on our model.
    def test_save_load_strict(self):
        config, _ = self.model_tester.prepare_config_and_inputs()
        for model_class in self.all_model_classes:
            model = model_class(config)
            with tempfile.TemporaryDirectory() as tmpdirname:
                model.save_pretrained(tmpdirname)
                _, info = model_class.from_pretrained(tmpdirname, output_loading_info=True)
            self.assertEqual(info["missing_keys"], set())

    def test_decoder_model_past_with_large_inputs(self):
        """Three new tokens decoded from the cache of the first seven equal the last three of one uncached pass."""
        config, inputs = self.model_tester.prepare_config_and_inputs()
        model = VaswaniModel(config).to(torch_device).eval()
        encoder_states = model.get_encoder()(inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
        decoder = model.get_decoder()
        context = dict(encoder_hidden_states=encoder_states, encoder_attention_mask=inputs["attention_mask"])
        ids, mask = inputs["decoder_input_ids"], inputs["decoder_attention_mask"].long()
        first = decoder(ids, attention_mask=mask, use_cache=True, **context)
        next_ids = ids_tensor((self.model_tester.batch_size, 3), config.vocab_size)
        next_mask = torch.cat([mask, ids_tensor((self.model_tester.batch_size, 3), 2)], dim=-1)
        no_past = decoder(torch.cat([ids, next_ids], dim=-1), attention_mask=next_mask, **context)
        with_past = decoder(next_ids, attention_mask=next_mask, past_key_values=first.past_key_values, **context)
        self.assertEqual(with_past.last_hidden_state.shape[1], 3)
        torch.testing.assert_close(
            with_past.last_hidden_state, no_past.last_hidden_state[:, -3:], atol=1e-4, rtol=1e-4
        )

    def test_encoder_decoder_model_standalone(self):
        """The encoder and decoder, saved and loaded on their own, compute what they compute inside the model."""
        config, inputs = self.model_tester.prepare_config_and_inputs()
        model = VaswaniModel(config).to(torch_device).eval()
        outputs = model(**inputs)
        with tempfile.TemporaryDirectory() as tmpdirname:
            model.get_encoder().save_pretrained(tmpdirname)
            encoder = type(model.get_encoder()).from_pretrained(tmpdirname).to(torch_device).eval()
        encoder_states = encoder(inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
        torch.testing.assert_close(encoder_states, outputs.encoder_last_hidden_state, atol=1e-4, rtol=1e-4)
        with tempfile.TemporaryDirectory() as tmpdirname:
            model.get_decoder().save_pretrained(tmpdirname)
            decoder = type(model.get_decoder()).from_pretrained(tmpdirname).to(torch_device).eval()
        decoder_states = decoder(
            input_ids=inputs["decoder_input_ids"],
            attention_mask=inputs["decoder_attention_mask"],
            encoder_hidden_states=encoder_states,
            encoder_attention_mask=inputs["attention_mask"],
        )[0]
        torch.testing.assert_close(decoder_states, outputs.last_hidden_state, atol=1e-4, rtol=1e-4)


skip_tests(VaswaniModelTest, SKIPPED)


# ---------------------------------------------------------------------------------------------------------------------
# Reference run on Marian, on request only (VASWANI_COMMON_TESTS_MARIAN=1)
# ---------------------------------------------------------------------------------------------------------------------
# Marian's own test class skips these (tests/models/marian/test_modeling_marian.py), with these reasons; it also skips
# everything we skip in SKIPPED, for the same reason.
MARIAN_SKIPPED = {
    **SKIPPED,
    "test_training_gradient_checkpointing": "Marian's test skips it: gradients are wrong under GC (PR #27124)",
    "test_training_gradient_checkpointing_use_reentrant_false": "Marian's test skips it (PR #27124)",
    "test_training_gradient_checkpointing_use_reentrant_true": "Marian's test skips it (PR #27124)",
}

if RUN_MARIAN:
    from transformers import MarianConfig, MarianModel, MarianMTModel

    class MarianModelTester(Seq2SeqModelTester):
        """MarianModelTester's config (4 heads, feed-forward width 4, dropout 0.1, its special token ids) on the same
        inputs as ours (Marian's tester passes the source mask as the decoder mask, which matters to no common test)."""

        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id = 1, 0, 2, 3

        def __init__(self, parent, **kwargs):
            super().__init__(parent, **kwargs)
            self.num_attention_heads = 4
            self.intermediate_size = 4

        def get_config(self) -> MarianConfig:
            return MarianConfig(
                vocab_size=self.vocab_size,
                d_model=self.hidden_size,
                encoder_layers=self.num_hidden_layers,
                decoder_layers=self.num_hidden_layers,
                encoder_attention_heads=self.num_attention_heads,
                decoder_attention_heads=self.num_attention_heads,
                encoder_ffn_dim=self.intermediate_size,
                decoder_ffn_dim=self.intermediate_size,
                dropout=0.1,
                attention_dropout=0.1,
                max_position_embeddings=self.max_position_embeddings,
                eos_token_id=self.eos_token_id,
                bos_token_id=self.bos_token_id,
                pad_token_id=self.pad_token_id,
                decoder_start_token_id=self.decoder_start_token_id,
            )

    class MarianModelTest(ModelTesterMixin, unittest.TestCase):
        all_model_classes = (MarianModel, MarianMTModel)
        is_encoder_decoder = True
        test_missing_keys = False  # as Marian's test class sets it

        def setUp(self):
            self.model_tester = MarianModelTester(self)
            self.config_tester = ConfigTester(self, config_class=MarianConfig)

        def test_config(self):
            self.config_tester.run_common_tests()

    skip_tests(MarianModelTest, MARIAN_SKIPPED)


def test_sdist_matches_installed_transformers():
    """The common tests come from the sdist of the installed version: tests of another version may test behaviour
    that this transformers does not have."""
    pkg_info = (SDIST / "PKG-INFO").read_text()
    assert f"\nVersion: {VERSION}\n" in pkg_info
    assert Path(test_modeling_common.__file__).is_relative_to(SDIST)
