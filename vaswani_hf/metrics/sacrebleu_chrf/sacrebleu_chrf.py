"""Detokenized corpus sacreBLEU and chrF in one `evaluate` metric, for `evaluate.load(path_to_this_folder)`.

`evaluate.load` copies this file alone into its modules cache and imports it from there, so it imports only
libraries, never the package around it.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    pages = "186--191",
}
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    pages = "392--395",
}
"""

_DESCRIPTION = """\
Corpus-level BLEU and chrF of detokenized hypotheses, computed by sacrebleu with its defaults (BLEU: 13a tokenizer,
exponential smoothing; chrF: chrF2, character 6-grams, beta 2), with the signatures that make the scores reproducible.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): detokenized hypotheses, one per segment.
    references (`list[str]` or `list[list[str]]`): one detokenized reference per segment, or for several references
        a list per segment; every segment needs the same number of references.
    tokenize (`str`, optional): sacrebleu's BLEU tokenizer ("13a", "intl", "zh", "ja-mecab", "char", "none", ...);
        defaults to sacrebleu's default, "13a".
    lowercase (`bool`, optional, defaults to `False`): lowercase hypotheses and references, for BLEU and chrF.

Returns:
    bleu (`float`): corpus BLEU, 0 to 100.
    chrf (`float`): corpus chrF2, 0 to 100.
    bleu_signature (`str`), chrf_signature (`str`): sacrebleu's signatures of the settings.
    bleu_details (`dict`): `precisions` (n-gram precisions, 1 to 4, in percent), `bp` (brevity penalty), `ratio`
        (hypothesis to reference length), `sys_len` and `ref_len` (in tokens).

Example:
    >>> metric = evaluate.load("path/to/sacrebleu_chrf")
    >>> result = metric.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    >>> result["bleu"], result["chrf"]
    (100.0, 100.0)
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SacrebleuChrf(evaluate.Metric):
    """Corpus sacreBLEU and chrF, with their signatures."""

    def _info(self) -> evaluate.MetricInfo:
        string = datasets.Value("string", id="sequence")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Several references per segment, or one: evaluate picks the first that matches the input.
            features=[
                datasets.Features({"predictions": string, "references": datasets.Sequence(string, id="references")}),
                datasets.Features({"predictions": string, "references": string}),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W18-6319", "https://aclanthology.org/W15-3049"],
        )

    def _compute(self, predictions, references, tokenize=None, lowercase=False) -> dict:
        if references and isinstance(references[0], str):
            references = [[reference] for reference in references]
        counts = {len(segment_references) for segment_references in references}
        if len(counts) > 1:
            raise ValueError(
                f"every prediction needs the same number of references, got {sorted(counts)}; sacrebleu reads "
                "references as parallel streams"
            )
        # sacrebleu wants one stream per reference position, each as long as the predictions.
        streams = [list(stream) for stream in zip(*references, strict=True)] if references else []
        bleu = BLEU(tokenize=tokenize, lowercase=lowercase)
        chrf = CHRF(lowercase=lowercase)
        bleu_score = bleu.corpus_score(predictions, streams)
        chrf_score = chrf.corpus_score(predictions, streams)
        return {
            "bleu": bleu_score.score,
            "chrf": chrf_score.score,
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
            "bleu_details": {
                "precisions": list(bleu_score.precisions),
                "bp": bleu_score.bp,
                "ratio": bleu_score.ratio,
                "sys_len": bleu_score.sys_len,
                "ref_len": bleu_score.ref_len,
            },
        }
