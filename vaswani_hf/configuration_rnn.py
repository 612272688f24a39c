"""Configuration of the recurrent encoder-decoder, the baseline the Transformer replaced (Vaswani et al., 2017, §1):
Sutskever et al. (2014) and Cho et al. (2014) without attention, Bahdanau et al. (2015) with additive attention, and
Luong et al. (2015) with multiplicative attention ("dot" and "general").

`attribute_map` exposes the fields under transformers' generic names so that `generate()`, the Trainer and the common
model tests find them.
"""

import copy

from transformers import PreTrainedConfig

from .configuration_vaswani import CUSTOM_PIPELINES, translation_task_registered, warn_misspelt_fields

CELLS = ("gru", "lstm")
ATTENTIONS = ("none", "additive", "dot", "general")

# As configuration_vaswani.AUTO_MAP: a saved directory also loads where this package is not installed, with
# `trust_remote_code=True`, from the code files saved beside the weights.
AUTO_MAP = {
    "AutoConfig": "configuration_rnn.RNNConfig",
    "AutoModel": "modeling_rnn.RNNModel",
    "AutoModelForSeq2SeqLM": "modeling_rnn.RNNForConditionalGeneration",
}


class RNNConfig(PreTrainedConfig):
    r"""
    The defaults are RNNsearch of Bahdanau et al. (2015): a GRU encoder read in both directions, additive attention,
    1000 hidden units and 620-dimensional embeddings in one layer per side; with the Transformer's ONE vocabulary
    shared by source and target (the shared BPE of Vaswani et al., §5.1) and one matrix for the embeddings and the
    output projection (§3.4).

    Args:
        vocab_size: size of the vocabulary shared by source and target.
        cell: "gru" (Cho et al., 2014) or "lstm" (Hochreiter & Schmidhuber, 1997; Sutskever et al., 2014).
        bidirectional: read the source in both directions and concatenate the two states of each token (Bahdanau et
            al., §3.2); the decoder then starts from a tanh projection of both final states.
        attention: "none" (the encoder's final state is the decoder's only view of the source: Sutskever et al.,
            Cho et al.), "additive" (Bahdanau et al.: v^T tanh(W s + U h), with the context fed back into the next
            step), "dot" or "general" (Luong et al., §3.1: s^T h and s^T W h).
        hidden_size: units per recurrent layer and direction.
        embedding_size: width of the token embeddings and of the layer before the output projection, which shares the
            embedding matrix when `tie_word_embeddings` is True.
        encoder_layers, decoder_layers: stacked recurrent layers on each side. The top layers of the two stacks are
            paired (the decoder's top layer starts from the encoder's top layer's final state, and so on down); a
            decoder layer without an encoder partner starts from zeros.
        dropout: dropout on the non-recurrent connections (Zaremba et al., 2014): embeddings, between stacked layers,
            and the layer before the output projection. Luong et al. use 0.2.
        initializer_range: every weight starts uniform in [-initializer_range, initializer_range] (Luong et al.,
            §4.1: 0.1; Sutskever et al., §3.4: 0.08).
        tie_word_embeddings: one matrix for source embeddings, target embeddings and the output projection, as in the
            Transformer. False gives three separate matrices.
    """

    model_type = "rnn_seq2seq"
    # The decoding cache in model outputs, under its name since transformers 5.24 and before: Trainer leaves it out of
    # the logits it gathers.
    keys_to_ignore_at_inference = ["cache", "past_key_values"]
    attribute_map = {"num_hidden_layers": "encoder_layers"}

    vocab_size: int = 37000
    cell: str = "gru"
    bidirectional: bool = True
    attention: str = "additive"
    hidden_size: int = 1000
    embedding_size: int = 620
    encoder_layers: int = 1
    decoder_layers: int = 1
    dropout: float = 0.2
    initializer_range: float = 0.1
    tie_word_embeddings: bool = True
    use_cache: bool = True
    is_encoder_decoder: bool = True
    # The special tokens of VaswaniConfig (and of the package's shared BPE): decoding starts from <s>.
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    decoder_start_token_id: int = 1

    def __post_init__(self, **kwargs):
        # As VaswaniConfig: the translation pipeline is named only where this process has no translation task.
        if "custom_pipelines" in kwargs and translation_task_registered():
            del kwargs["custom_pipelines"]
        warn_misspelt_fields(self, kwargs)
        super().__post_init__(**kwargs)
        for name in ("vocab_size", "hidden_size", "embedding_size", "encoder_layers", "decoder_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"RNNConfig.{name} must be a positive integer, got {value!r}.")
        if self.cell not in CELLS:
            raise ValueError(f"RNNConfig.cell must be one of {CELLS}, got {self.cell!r}.")
        if self.attention not in ATTENTIONS:
            raise ValueError(
                f"RNNConfig.attention must be one of {ATTENTIONS}, got {self.attention!r}. Use 'none' for the "
                "encoder's final state alone."
            )
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"RNNConfig.bidirectional must be True or False, got {self.bidirectional!r}.")
        if self.attention == "dot" and self.bidirectional:
            raise ValueError(
                "RNNConfig.attention='dot' scores s^T h, which needs decoder and encoder states of one width, but a "
                f"bidirectional encoder's states are 2 * hidden_size = {2 * self.hidden_size} wide. Use "
                "attention='general' (s^T W h, with a learned W between the widths) or bidirectional=False."
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"RNNConfig.dropout must be a number in [0, 1), got {self.dropout!r}.")
        if (
            isinstance(self.initializer_range, bool)
            or not isinstance(self.initializer_range, (int, float))
            or self.initializer_range <= 0
        ):
            raise ValueError(f"RNNConfig.initializer_range must be a positive number, got {self.initializer_range!r}.")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"RNNConfig.{name} must be a token id in [0, vocab_size={self.vocab_size}), got {value!r}."
                )

    # Copied from vaswani_hf.configuration_vaswani.VaswaniConfig.to_dict
    def to_dict(self) -> dict:
        return {**super().to_dict(), "auto_map": dict(AUTO_MAP), "custom_pipelines": copy.deepcopy(CUSTOM_PIPELINES)}


__all__ = ["RNNConfig"]
