"""Loads a staged folder in a fresh interpreter where `vaswani_hf` cannot be imported, as for a user who has only
transformers, and writes what it found as JSON. `validate_staged` runs this file by path, offline:

    python packageless_check.py STAGE_DIR SENTENCE REPORT_FILE [ORIGINAL_SAFETENSORS ...]

A folder with an `auto_map` loads through its own code files, and translates SENTENCE through the `translation`
pipeline they define; one without loads transformers' own class, and translates with generate() (transformers 5 has
no such pipeline). The loaded weights are compared, tensor for tensor, with those of the original files.

The report: `remote` (loaded through the folder's code), `model_class` and `model_module` (what loaded it),
`translation`, `checked` (tensors compared), `different` (the names of those that differ) and `imported` (any
`vaswani_hf` module that was imported all the same; none is expected).
"""

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    stage, sentence, report_path, *originals = argv
    # `python FILE` puts this file's folder first on the module path, which would make the package's modules beside
    # it importable under other names.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    sys.modules["vaswani_hf"] = None  # an import of the package fails, as where it is not installed
    # Imported after that, so that nothing they load can reach the package.
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    remote = "auto_map" in json.loads(Path(stage, "config.json").read_text(encoding="utf-8"))
    model = AutoModelForSeq2SeqLM.from_pretrained(stage, trust_remote_code=remote)
    tokenizer = AutoTokenizer.from_pretrained(stage, trust_remote_code=remote)
    if remote:
        translator = pipeline("translation", model=stage, trust_remote_code=True)
        translation = translator(sentence)[0]["translation_text"]
    else:
        output = model.generate(**tokenizer([sentence], return_tensors="pt"))
        translation = tokenizer.batch_decode(output, skip_special_tokens=True)[0]

    state = model.state_dict()
    checked, different = 0, []
    for path in originals:
        with safe_open(path, framework="pt") as weights:
            for key in weights.keys():
                checked += 1
                if key not in state or not torch.equal(state[key], weights.get_tensor(key)):
                    different.append(key)
    imported = sorted(name for name, module in sys.modules.items() if name.split(".")[0] == "vaswani_hf" and module)
    report = {
        "remote": remote,
        "model_class": type(model).__name__,
        "model_module": type(model).__module__,
        "translation": translation,
        "checked": checked,
        "different": different,
        "imported": imported,
    }
    Path(report_path).write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
