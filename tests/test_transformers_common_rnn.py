"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester` of the transformers sdist) on the recurrent
encoder-decoder, with the harness of test_transformers_common.py (which fetches the sdist and says how to run it).

Two configurations cover the model's two decoder forms: a bidirectional GRU with additive attention (the decoder loops
over positions, feeding the context back) and an LSTM with Luong's general attention (one fused decoder call).

    HF_HUB_OFFLINE=1 pytest -p no:cacheprovider tests/test_transformers_common_rnn.py -q
"""

import tempfile
import unittest
from unittest import mock

import pytest
import torch
from test_transformers_common import SKIPPED, ConfigTester, ModelTesterMixin, Seq2SeqModelTester, skip_tests
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES
from transformers.testing_utils import torch_device

from vaswani_hf import RNNConfig, RNNForConditionalGeneration, RNNModel
from vaswani_hf.transformers_adapter import output_cache

# Only features the model does not have; a test that fails on a bug in the model is never listed here.
RNN_SKIPPED = {
    **SKIPPED,
    "test_attention_outputs": "no self-attention and one cross-attention in all: the test counts one per layer",
    "test_hidden_states_output": "the fused multi-layer nn.GRU/nn.LSTM exposes its top layer's outputs only, not one "
    "hidden state per layer",
    "test_retain_grad_hidden_states_attentions": "no per-layer hidden states (fused nn.GRU/nn.LSTM) and no "
    "encoder or decoder self-attentions to retain gradients of",
}

pytestmark = pytest.mark.usefixtures("one_thread")


class RNNModelTester(Seq2SeqModelTester):
    """The harness's tiny inputs (13 sources of 7 tokens, vocabulary 99) on an RNN of width 16, 2 + 2 layers, with the
    cell, direction and attention in `options`."""

    def __init__(self, parent: unittest.TestCase, options: dict):
        super().__init__(parent)
        self.options = options

    def get_config(self) -> RNNConfig:
        return RNNConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            embedding_size=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            decoder_layers=self.num_hidden_layers,
            # The tests that compare outputs put the model in eval mode; the training tests run with dropout on.
            dropout=0.1,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            **self.options,
        )


class RNNCommonTests(ModelTesterMixin):
    all_model_classes = (RNNModel, RNNForConditionalGeneration)
    is_encoder_decoder = True
    # The mixin skips this test for models whose configuration file has no copyright line of 2023 or later, as a
    # transformers model added before 2023 would have; ours has none and is newer.
    test_can_init_all_missing_weights_before_2023 = True
    options: dict = {}

    @classmethod
    def setUpClass(cls):
        """As VaswaniModelTest.setUpClass: the mixin tells a base model from a head by transformers' tables of
        in-library models, which `AutoModel.register` does not fill."""
        super().setUpClass()
        for table, name in (
            (MODEL_MAPPING_NAMES, RNNModel.__name__),
            (MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, RNNForConditionalGeneration.__name__),
        ):
            patcher = mock.patch.dict(table, {RNNConfig.model_type: name})
            patcher.start()
            cls.addClassCleanup(patcher.stop)

    def setUp(self):
        self.model_tester = RNNModelTester(self, self.options)
        # An RNN has no attention heads: the generic properties it has are these (and vocab_size, always checked).
        self.config_tester = ConfigTester(
            self, config_class=RNNConfig, common_properties=["hidden_size", "num_hidden_layers"]
        )

    def test_config(self):
        self.config_tester.run_common_tests()

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
        model = RNNModel(config).to(torch_device).eval()
        encoder_outputs = model.get_encoder()(inputs["input_ids"], attention_mask=inputs["attention_mask"])
        context = dict(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"])
        ids = inputs["decoder_input_ids"]
        first = model(decoder_input_ids=ids, use_cache=True, **context)
        next_ids = torch.randint(config.vocab_size, (self.model_tester.batch_size, 3), device=torch_device)
        no_past = model(decoder_input_ids=torch.cat([ids, next_ids], dim=-1), use_cache=False, **context)
        with_past = model(decoder_input_ids=next_ids, cache=output_cache(first), **context)
        self.assertEqual(with_past.last_hidden_state.shape[1], 3)
        torch.testing.assert_close(
            with_past.last_hidden_state, no_past.last_hidden_state[:, -3:], atol=1e-5, rtol=1e-5
        )


class RNNGRUAdditiveModelTest(RNNCommonTests, unittest.TestCase):
    options = dict(cell="gru", bidirectional=True, attention="additive")


class RNNLSTMGeneralModelTest(RNNCommonTests, unittest.TestCase):
    options = dict(cell="lstm", bidirectional=True, attention="general")


skip_tests(RNNGRUAdditiveModelTest, RNN_SKIPPED)
skip_tests(RNNLSTMGeneralModelTest, RNN_SKIPPED)
