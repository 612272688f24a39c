"""Export to CTranslate2 (https://github.com/OpenNMT/CTranslate2), a C++ inference engine for Transformers.

`converter` writes a `VaswaniForConditionalGeneration` as a CTranslate2 model (`VaswaniConverter`,
`convert_to_ctranslate2`), every difference of conventions set explicitly; `translator` decodes with a converted folder
(`CTranslate2Translator`); `parity` checks that its greedy translations are ours (`compare_greedy`).
"""

# Checked once here, before any module of this package imports it: the message says how to install it.
try:
    import ctranslate2  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    # The cause stays in the message: it tells a missing package from an installed one that fails to load.
    raise ImportError(
        f"The CTranslate2 export needs the ctranslate2 package, which cannot be imported ({error}): install it with "
        "pip install 'vaswani_hf[ctranslate2]'"
    ) from error

from .converter import (
    EXPORT_INFO_FILE,
    ExportError,
    VaswaniConverter,
    build_transformer_spec,
    convert_to_ctranslate2,
    load_model_and_tokenizer,
    vocabulary,
)
from .parity import compare_greedy, generate_reference_ids
from .translator import CTranslate2Translator

__all__ = [
    "EXPORT_INFO_FILE",
    "CTranslate2Translator",
    "ExportError",
    "VaswaniConverter",
    "build_transformer_spec",
    "compare_greedy",
    "convert_to_ctranslate2",
    "generate_reference_ids",
    "load_model_and_tokenizer",
    "vocabulary",
]
