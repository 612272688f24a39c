"""A toy translation task for tests that need a trained model: reverse a sequence of words and end it with </s>.

A tiny model learns it in a few seconds on a CPU and then ends its outputs at varied lengths, as a real translation
model does, so that decoding tests compare meaningful outputs rather than a random model's. `conftest.py` trains one
per test session (`trained_toy_model`).
"""

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from vaswani_hf import VaswaniConfig, VaswaniForConditionalGeneration

PAD, BOS, EOS = 0, 1, 2
FIRST_WORD = 4  # ids below are special tokens
VOCAB = 16


def tiny_config(**overrides) -> VaswaniConfig:
    return VaswaniConfig(
        **{
            **dict(
                vocab_size=VOCAB,
                d_model=32,
                d_ff=64,
                num_heads=2,
                encoder_layers=2,
                decoder_layers=2,
                dropout=0.0,
                max_position_embeddings=128,
            ),
            **overrides,
        }
    )


def random_words(length: int, generator: torch.Generator) -> list[int]:
    return torch.randint(FIRST_WORD, VOCAB, (length,), generator=generator).tolist()


def pad_batch(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and attention mask."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), PAD)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = torch.tensor(s)
    return input_ids, (input_ids != PAD).long()


def toy_examples(lengths, generator: torch.Generator) -> tuple[list[list[int]], list[list[int]]]:
    """Sources `w1 .. wn </s>` and their targets `wn .. w1 </s>`."""
    words = [random_words(n, generator) for n in lengths]
    return [w + [EOS] for w in words], [w[::-1] + [EOS] for w in words]


def as_text(ids: list[int]) -> str:
    """The words of a toy sequence as `word_tokenizer` reads them, without </s>."""
    return " ".join(f"w{token}" for token in ids if token != EOS)


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer for the toy vocabulary: "w4 w9 w5" -> [4, 9, 5, </s>], so that the translation pipeline
    runs on the trained toy model."""
    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, "<unk>": 3, **{f"w{i}": i for i in range(FIRST_WORD, VOCAB)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def train_toy_model(steps: int = 300) -> VaswaniForConditionalGeneration:
    """The tiny model trained on sequences of 3 to 8 words (a few seconds on one thread); returned in eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, above all on a busy machine
    try:
        torch.manual_seed(0)
        model = VaswaniForConditionalGeneration(tiny_config())
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, foreach=True)
        generator = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(steps):
            lengths = torch.randint(3, 9, (64,), generator=generator).tolist()
            sources, targets = toy_examples(lengths, generator)
            input_ids, attention_mask = pad_batch(sources)
            labels, _ = pad_batch(targets)  # pad labels are ignored by the loss
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()
