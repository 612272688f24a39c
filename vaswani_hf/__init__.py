"""vaswani_hf: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as a transformers model.

Importing the package registers the model with the Auto classes and restores the `translation` pipeline task,
which transformers 5 removed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_rnn import RNNConfig
from .configuration_vaswani import VaswaniConfig
from .modeling_rnn import RNNForConditionalGeneration, RNNModel, RNNPreTrainedModel
from .modeling_vaswani import VaswaniForConditionalGeneration, VaswaniModel, VaswaniPreTrainedModel
from .pipeline_translation import TranslationPipeline
from .tokenization import SPECIAL_TOKENS, train_shared_bpe
from .transformers_adapter import allow_translation_task

AutoConfig.register(VaswaniConfig.model_type, VaswaniConfig)
AutoModel.register(VaswaniConfig, VaswaniModel)
AutoModelForSeq2SeqLM.register(VaswaniConfig, VaswaniForConditionalGeneration)
AutoConfig.register(RNNConfig.model_type, RNNConfig)
AutoModel.register(RNNConfig, RNNModel)
AutoModelForSeq2SeqLM.register(RNNConfig, RNNForConditionalGeneration)

# transformers 5 dropped the task (and from 5.20 rejects its name before it looks the task up); the pipeline serves any
# encoder-decoder model with generate(), so the task comes back for every such model, not only this one.
allow_translation_task()
PIPELINE_REGISTRY.register_pipeline(
    "translation", pipeline_class=TranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)

__all__ = [
    "RNNConfig",
    "RNNForConditionalGeneration",
    "RNNModel",
    "RNNPreTrainedModel",
    "SPECIAL_TOKENS",
    "TranslationPipeline",
    "VaswaniConfig",
    "VaswaniForConditionalGeneration",
    "VaswaniModel",
    "VaswaniPreTrainedModel",
    "train_shared_bpe",
]
