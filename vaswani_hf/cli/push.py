"""Upload a saved model to the Hugging Face Hub as one commit, after checking offline that it loads without this
package.

    vaswani-push outputs/main-job/model --dry-run --stage-dir /tmp/upload   # stage and check only
    vaswani-push outputs/main-job/model your-name/transformer-en-de-small    # upload
    vaswani-push runs/base/model your-name/transformer-base --exist-ok --max-shard-size 200MB

Any model AutoModelForSeq2SeqLM loads can be pushed: this package's, or a MarianMTModel trained with
model.architecture=marian. The staged folder holds safetensors weights (sharded above --max-shard-size), config.json
(with auto_map and the code files it names, for this package's models), the tokenizer, the generation config and
README.md: the model directory's own card, --card, or one generated from the training run (--run-dir, default the
model directory's parent). It is checked before any upload: no pickle files, the card parses, the weights equal the
original, and a fresh process without vaswani_hf loads it with AutoModelForSeq2SeqLM and translates a sentence
(through pipeline("translation", trust_remote_code=True) where the folder carries its code, with generate() where
transformers has the class).

The token comes from `hf auth login` or HF_TOKEN. An existing repository is refused unless --exist-ok. Exit status 0
on success, 1 with a message saying what to do otherwise.
"""

import argparse
import sys

from vaswani_hf.errors import user_errors
from vaswani_hf.export.hub import DEFAULT_MAX_SHARD_SIZE, DEFAULT_SENTENCE, HubError, push_to_hub


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder of the saved model and its tokenizer")
    parser.add_argument("repo_id", nargs="?", help="Hub model repository, e.g. your-name/transformer-en-de")
    parser.add_argument("--dry-run", action="store_true", help="stage and validate only; upload nothing")
    parser.add_argument("--stage-dir", help="new or empty folder to stage in (default: a temporary folder)")
    parser.add_argument(
        "--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE, help="largest safetensors file (default: %(default)s)"
    )
    parser.add_argument(
        "--card", help="README.md to upload as the model card (default: MODEL_DIR/README.md or generated)"
    )
    parser.add_argument(
        "--run-dir", help="training run folder to generate the card from (default: MODEL_DIR's parent)"
    )
    parser.add_argument(
        "--license", default="apache-2.0", help="Hub licence id for a generated card (default: %(default)s)"
    )
    parser.add_argument("--exist-ok", action="store_true", help="add a commit to an existing repository")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--skip-validation", action="store_true", help="upload without the offline checks")
    parser.add_argument("--sentence", default=DEFAULT_SENTENCE, help="sentence the check translates")
    parser.add_argument("--commit-message", default="Upload vaswani_hf model")
    args = parser.parse_args(argv)
    if not args.dry_run and not args.repo_id:
        parser.error("give REPO_ID to upload to, or --dry-run")
    return args


@user_errors
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        push_to_hub(
            args.model_dir,
            args.repo_id,
            dry_run=args.dry_run,
            stage_dir=args.stage_dir,
            max_shard_size=args.max_shard_size,
            card=args.card,
            run_dir=args.run_dir,
            license=args.license,
            exist_ok=args.exist_ok,
            private=args.private or None,
            skip_validation=args.skip_validation,
            sentence=args.sentence,
            commit_message=args.commit_message,
        )
    except HubError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
