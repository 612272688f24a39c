"""Shared source-target BPE tokenizer for the Transformer of Vaswani et al. (2017).

Load a saved tokenizer with ``transformers.AutoTokenizer.from_pretrained(path)``.
"""

from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
# The trainer assigns ids in list order, so this fixes pad=0, bos=1, eos=2, unk=3.
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)


def train_shared_bpe(
    texts: Iterable[str],
    vocab_size: int = 8000,
    *,
    min_frequency: int = 2,
    model_max_length: int = 1024,
) -> PreTrainedTokenizerFast:
    """Train one BPE vocabulary on source and target sentences together.

    The paper shares one weight matrix between the source embeddings, the
    target embeddings and the pre-softmax projection (§3.4), which only works
    if both languages use the same vocabulary; hence pass sentences of both
    languages in ``texts`` (any iterable, a generator is read once).

    Text is NFKC-normalised and split with Metaspace, which encodes spaces as
    ``▁`` inside the tokens, so ``decode`` gives back the normalised text with
    its spaces between words (leading spaces are dropped): detokenized text,
    as detokenized sacreBLEU expects.

    Every encoded sequence ends with ``</s>``, also after ``truncation=True``
    (the eos is reserved inside ``model_max_length``); this holds for the
    ``labels`` of ``tok(src, text_target=tgt)`` as well, which the model
    shifts right behind ``<s>`` to build decoder inputs. An empty string
    encodes to ``[</s>]``. Characters absent from the training text map to
    ``<unk>`` (id 3); ``decode(..., skip_special_tokens=True)`` drops them.

    ``vocab_size`` bounds the number of merges, but the trainer always keeps
    every character seen in training, so the final size may differ: size the
    model's embeddings with ``len(tokenizer)``.

    Raises:
        ValueError: if ``vocab_size`` is not an int larger than the number of
            special tokens, or if ``texts`` contains no non-blank string.
        TypeError: if ``texts`` is a single string instead of an iterable of
            sentences, or contains a non-string item.
    """
    n_special = len(SPECIAL_TOKENS)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= n_special:
        raise ValueError(f"vocab_size must be an int larger than the {n_special} special tokens, got {vocab_size!r}")
    # Iterating a str yields characters: it would silently train on one "sentence" per character.
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of sentences, not a single str; wrap it in a list")

    n_nonblank = 0

    def counted(items: Iterable[str]) -> Iterator[str]:
        # Counting while streaming checks a generator corpus without a second pass.
        nonlocal n_nonblank
        for text in items:
            if not isinstance(text, str):
                raise TypeError(f"texts must contain only str, got {type(text).__name__}")
            n_nonblank += bool(text.strip())
            yield text

    tokenizer = Tokenizer(BPE(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(counted(texts), trainer=trainer)
    if n_nonblank == 0:
        raise ValueError(
            "the training corpus is empty (no non-blank string); pass the source and target sentences in `texts`"
        )

    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}",
        pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(EOS_TOKEN, eos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="right",
        model_max_length=model_max_length,
    )
