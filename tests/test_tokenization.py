"""Tests for the shared source-target BPE tokenizer."""

import pytest
import torch
from transformers import AutoTokenizer

from vaswani_hf.tokenization import (
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    UNK_TOKEN,
    train_shared_bpe,
)

MAX_LEN = 32

EN = [
    "The cat sits on the mat.",
    "I would like a cup of coffee, please.",
    "Where is the train station?",
    "The weather is nice today!",
    "We are going to the market tomorrow.",
    "She reads a book in the garden.",
    "My brother lives in Berlin.",
    "Thank you very much for your help.",
    "The children play in the street.",
    "How old are you?",
    "This house is very big.",
    "He drinks water, not beer.",
]
DE = [
    "Die Katze sitzt auf der Matte.",
    "Ich hätte gern eine Tasse Kaffee, bitte.",
    "Wo ist der Bahnhof?",
    "Das Wetter ist heute schön!",
    "Wir gehen morgen auf den Markt.",
    "Sie liest ein Buch im Garten.",
    "Mein Bruder wohnt in Berlin.",
    "Vielen Dank für Ihre Hilfe.",
    "Die Kinder spielen auf der Straße.",
    "Wie alt bist du?",
    "Dieses Haus ist sehr groß.",
    "Er trinkt Wasser, kein Bier. Grüße aus München!",
]


@pytest.fixture(scope="module")
def tok():
    # A generator checks that the corpus is consumed in a single pass.
    corpus = (s for _ in range(5) for s in EN + DE)
    return train_shared_bpe(corpus, vocab_size=200, model_max_length=MAX_LEN)


def test_special_token_ids(tok):
    assert tok.convert_tokens_to_ids([PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]) == [0, 1, 2, 3]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.padding_side == "right"
    assert tok.model_max_length == MAX_LEN


@pytest.mark.parametrize("sentence", [EN[1], EN[3], DE[1], DE[8], DE[11]])
def test_round_trip(tok, sentence):
    ids = tok(sentence).input_ids
    assert ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == sentence


def test_source_and_labels_end_with_eos(tok):
    enc = tok(EN[0], text_target=DE[0])
    assert enc.input_ids[-1] == tok.eos_token_id
    assert enc.labels[-1] == tok.eos_token_id
    assert tok.decode(enc.labels, skip_special_tokens=True) == DE[0]
    # bos is the decoder start token, added by the model, never by the tokenizer.
    assert tok.bos_token_id not in enc.input_ids + enc.labels


def test_batch_pads_right_with_zero(tok):
    src, tgt = [EN[9], EN[1]], [DE[9], DE[1]]
    batch = tok(src, text_target=tgt, padding=True, return_tensors="pt")
    assert isinstance(batch.input_ids, torch.Tensor) and isinstance(batch.labels, torch.Tensor)
    for key, texts in (("input_ids", src), ("labels", tgt)):
        short, long = batch[key]
        n = len(tok(texts[0]).input_ids)
        assert 0 < n < len(short)
        assert short[n - 1] == tok.eos_token_id
        assert torch.all(short[n:] == tok.pad_token_id)
        assert long[-1] == tok.eos_token_id
    n = len(tok(src[0]).input_ids)
    assert batch.attention_mask[0].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)


def test_save_and_reload(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for s in [EN[0], EN[5], DE[3], DE[11], "Grüße 你好"]:
        assert reloaded(s).input_ids == tok(s).input_ids
    assert reloaded.all_special_tokens == tok.all_special_tokens
    r = reloaded
    assert [r.pad_token_id, r.bos_token_id, r.eos_token_id, r.unk_token_id] == [0, 1, 2, 3]
    assert reloaded.model_max_length == MAX_LEN
    assert reloaded.padding_side == "right"
    assert reloaded.decode(reloaded(DE[1]).input_ids, skip_special_tokens=True) == DE[1]


def test_empty_string(tok):
    ids = tok("").input_ids
    assert ids == [tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == ""


def test_long_input_truncated_keeps_eos(tok):
    text = " ".join(EN + DE)
    assert len(tok(text).input_ids) > MAX_LEN
    ids = tok(text, truncation=True).input_ids
    assert len(ids) == MAX_LEN
    assert ids[-1] == tok.eos_token_id
    assert ids.count(tok.eos_token_id) == 1
    labels = tok(EN[0], text_target=text, truncation=True).labels
    assert len(labels) == MAX_LEN and labels[-1] == tok.eos_token_id


def test_unknown_characters_map_to_unk(tok):
    ids = tok("Die Katze 你 😀").input_ids
    assert ids.count(tok.unk_token_id) == 2
    assert ids[-1] == tok.eos_token_id
    text = tok.decode(ids, skip_special_tokens=True)
    assert text.startswith("Die Katze") and "你" not in text
    assert UNK_TOKEN in tok.decode(ids)


@pytest.mark.parametrize("vocab_size", [0, 4, -1, 3.5, "200", True])
def test_bad_vocab_size(vocab_size):
    with pytest.raises(ValueError, match="vocab_size"):
        train_shared_bpe(EN, vocab_size=vocab_size)


@pytest.mark.parametrize("texts", [[], ["", "   "], iter([])])
def test_empty_corpus(texts):
    with pytest.raises(ValueError, match="corpus is empty"):
        train_shared_bpe(texts, vocab_size=100)


def test_single_string_rejected():
    with pytest.raises(TypeError, match="iterable of sentences"):
        train_shared_bpe("Die Katze sitzt auf der Matte.", vocab_size=100)


def test_non_string_item_rejected():
    with pytest.raises(TypeError, match="only str"):
        train_shared_bpe(["Die Katze.", None], vocab_size=100)
