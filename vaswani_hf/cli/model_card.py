"""Write the model card (the Hub's README.md) of a saved model from its training run's files.

    vaswani-model-card outputs/main-job/model --output model_cards/main-job/README.md
    vaswani-model-card runs/base/model --run-dir runs/base --repo-id me/transformer-base-en-de \
        --output runs/base/model/README.md

Reads `config.json`, `generation_config.json` and the weights of MODEL_DIR, and `run_config.yaml`,
`train_summary.json`, `results.json` and `eval/*/scores.json` of the run directory (default: MODEL_DIR's parent).
The card lists every departure from the paper found by comparing the configs with the paper's preset; a model of
another type (a MarianMTModel from model.architecture=marian) has its own settings listed instead of Table 3's. Missing
optional inputs (scores, training summary) are left out of the card and named on stderr; a missing config is an error.
"""

import argparse
import sys

from vaswani_hf.errors import user_errors
from vaswani_hf.export.model_card import make_model_card


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder of the saved model (config.json, weights, tokenizer)")
    parser.add_argument("--run-dir", help="the training run's output_dir (default: MODEL_DIR's parent)")
    parser.add_argument("--results", help="the main job's results.json (default: RUN_DIR/results.json)")
    parser.add_argument("--eval-dir", help="folders of vaswani-evaluate scores.json (default: RUN_DIR/eval)")
    parser.add_argument(
        "--dataset-card",
        help="README.md of the built-in corpus (default: the cached corpus's, see vaswani_hf.data.default_corpus)",
    )
    parser.add_argument("--data-license", help="licence of the training data, where the run does not record it")
    parser.add_argument("--repo-id", help="Hub repo id the loading examples use (default: MODEL_DIR's path)")
    parser.add_argument("--model-name", help="name in the title and the model-index (default: from the repo id)")
    parser.add_argument(
        "--license", default="apache-2.0", help="Hub licence id of the model files (default: %(default)s)"
    )
    parser.add_argument("--output", "-o", help="where to write the card (default: print it)")
    return parser.parse_args(argv)


@user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        text, notes = make_model_card(
            args.model_dir,
            args.run_dir,
            args.output,
            results=args.results,
            eval_dir=args.eval_dir,
            dataset_card=args.dataset_card,
            data_license=args.data_license,
            model_id=args.repo_id,
            model_name=args.model_name,
            license=args.license,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
