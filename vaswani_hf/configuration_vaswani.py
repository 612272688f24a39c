"""Configuration of the Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

Fields carry the paper's symbols (`d_model`, `d_ff`, `num_heads`, `dropout`); `attribute_map` exposes them under
transformers' generic names so that caches, `generate()` and the Trainer find them.
"""

import copy
import difflib
import warnings

from transformers import PreTrainedConfig

POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned")
# Table 3, row "big", where it differs from the base model (the class defaults). N stays 6.
BIG = dict(d_model=1024, d_ff=4096, num_heads=16, dropout=0.3)

# Every saved directory also loads where this package is not installed, with `trust_remote_code=True`: the Auto
# classes find these classes in the code files saved beside the weights, and `pipeline("translation")`, a task that
# transformers 5 removed, finds its implementation there too.
AUTO_MAP = {
    "AutoConfig": "configuration_vaswani.VaswaniConfig",
    "AutoModel": "modeling_vaswani.VaswaniModel",
    "AutoModelForSeq2SeqLM": "modeling_vaswani.VaswaniForConditionalGeneration",
}
CUSTOM_PIPELINES = {
    "translation": {
        "impl": "pipeline_translation.TranslationPipeline",
        "pt": ["AutoModelForSeq2SeqLM"],
        "type": "text",
    }
}


def warn_misspelt_fields(config: PreTrainedConfig, kwargs: dict) -> None:
    """Warns about each of `kwargs` that is close to a field of `config`'s class but is none.

    A misspelt field would otherwise be kept as a stray attribute while the model takes the default (d_modle=256
    training a d_model of 512). A warning rather than an error: transformers' tools set other models' names
    (layer_norm_epsilon, ...) on any config, and special-token ids (sep_token_id) are no misspelt pad_token_id.
    """
    fields = [f for f in type(config).__annotations__ if not f.startswith("_")]
    for name in kwargs:
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.85)
        if close and name not in fields and not name.endswith("_token_id"):
            warnings.warn(
                f"{type(config).__name__} got {name!r}, which is not one of its fields: did you mean {close[0]!r}? "
                f"The model ignores {name!r}.",
                UserWarning,
                stacklevel=4,
            )


def translation_task_registered() -> bool:
    """Whether this process has a `translation` pipeline task (`import vaswani_hf` restores it)."""
    from transformers.pipelines import PIPELINE_REGISTRY

    return "translation" in PIPELINE_REGISTRY.get_supported_tasks()


class VaswaniConfig(PreTrainedConfig):
    r"""
    The defaults are the paper's base model (§3, Table 3 row "base") with the shared EN-DE BPE vocabulary of about
    37000 tokens (§5.1). Every option that departs from the paper is off by default.

    Args:
        vocab_size: size of the ONE vocabulary shared by source and target (§3.4, §5.1).
        d_model: width of every sub-layer output and embedding (§3).
        d_ff: inner width of the position-wise feed-forward network (Eq. 2).
        num_heads: parallel attention heads h; d_k = d_v = d_model / h (§3.2.2).
        encoder_layers, decoder_layers: N, the number of identical layers in each stack (§3.1).
        dropout: P_drop, applied to every sub-layer output before the residual add and to the sums of embeddings and
            positional encodings (§5.4).
        max_position_embeddings: longest sequence (source or target) the model accepts.
        layer_norm_eps: epsilon of every LayerNorm; the paper gives none, 1e-5 is PyTorch's default.
        attention_dropout: dropout on the attention weights. The paper has none; tensor2tensor and fairseq add it.
        norm_first: pre-norm `x + Sublayer(LayerNorm(x))` with a final LayerNorm per stack, instead of the paper's
            post-norm `LayerNorm(x + Sublayer(x))` (§3.1). Trains more stably in deep stacks; not the paper.
        position_embedding_type: "sinusoidal" (§3.5, the paper's choice) or "learned" (Table 3 row E).
        tie_word_embeddings: one matrix for source embeddings, target embeddings and the pre-softmax projection (§3.4).
            False gives three separate matrices.
    """

    model_type = "vaswani"
    # The decoding cache in model outputs, under its name since transformers 5.24 and before: Trainer leaves it out of
    # the logits it gathers.
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "encoder_attention_heads": "num_heads",
        "decoder_attention_heads": "num_heads",
        "intermediate_size": "d_ff",
        "encoder_ffn_dim": "d_ff",
        "decoder_ffn_dim": "d_ff",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 37000
    d_model: int = 512
    d_ff: int = 2048
    num_heads: int = 8
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.1
    max_position_embeddings: int = 1024
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    norm_first: bool = False
    position_embedding_type: str = "sinusoidal"
    tie_word_embeddings: bool = True
    use_cache: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    # Decoding starts from <s>; labels are shifted right behind it.
    decoder_start_token_id: int = 1

    def __post_init__(self, **kwargs):
        # transformers insists on trust_remote_code for any pipeline a config names. Where the translation task is
        # already registered, the copy saved beside the weights is not needed, so the config does not name it.
        if "custom_pipelines" in kwargs and translation_task_registered():
            del kwargs["custom_pipelines"]
        # Configs saved before the label smoothing of §5.4 moved to the training recipe (the model's loss is plain
        # cross-entropy, transformers' convention) carry it: it no longer means anything to the model.
        kwargs.pop("label_smoothing", None)
        warn_misspelt_fields(self, kwargs)
        super().__post_init__(**kwargs)
        for name in (
            "vocab_size",
            "d_model",
            "d_ff",
            "num_heads",
            "encoder_layers",
            "decoder_layers",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"VaswaniConfig.{name} must be a positive integer, got {value!r}.")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"VaswaniConfig.d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads}): "
                "each head gets d_k = d_model / num_heads dimensions (§3.2.2)."
            )
        if self.position_embedding_type == "sinusoidal" and self.d_model % 2:
            raise ValueError(
                f"VaswaniConfig.d_model ({self.d_model}) must be even for sinusoidal positions, which pair a sine "
                "and a cosine per frequency (§3.5)."
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"VaswaniConfig.{name} must be a number in [0, 1), got {value!r}.")
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ValueError(f"VaswaniConfig.layer_norm_eps must be a positive number, got {self.layer_norm_eps!r}.")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"VaswaniConfig.position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}."
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"VaswaniConfig.{name} must be a token id in [0, vocab_size={self.vocab_size}), got {value!r}."
                )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "auto_map": dict(AUTO_MAP), "custom_pipelines": copy.deepcopy(CUSTOM_PIPELINES)}

    @classmethod
    def base(cls, **overrides) -> "VaswaniConfig":
        """Table 3, row "base": N=6, d_model=512, d_ff=2048, h=8, P_drop=0.1, eps_ls=0.1 (65M parameters). These are
        the class defaults."""
        return cls(**overrides)

    @classmethod
    def big(cls, **overrides) -> "VaswaniConfig":
        """Table 3, row "big": N=6, d_model=1024, d_ff=4096, h=16, P_drop=0.3, eps_ls=0.1 (213M parameters).

        P_drop 0.3 is the EN-DE value; the paper's big EN-FR model used 0.1 (§6.1): pass `dropout=0.1` for it.
        """
        return cls(**{**BIG, **overrides})


__all__ = ["VaswaniConfig"]
