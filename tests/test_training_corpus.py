"""The corpus and tokenizer of a training run (vaswani_hf.training.corpus): a tokenizer that does not fit the model is
refused."""

import pytest

from vaswani_hf.training.corpus import check_tokenizer


def test_check_tokenizer_names_the_mismatch(tiny_config):
    class Tok:
        pad_token_id, eos_token_id = 0, 2

        def __len__(self):
            return 100

    with pytest.raises(ValueError, match="100 tokens.*vocabulary has 64"):
        check_tokenizer(tiny_config(), Tok())
    Tok.__len__ = lambda self: 64
    Tok.eos_token_id = 3
    with pytest.raises(ValueError, match="eos_token_id"):
        check_tokenizer(tiny_config(), Tok())
