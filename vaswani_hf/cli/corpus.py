"""Build (first run) or load the built-in English-German corpus and print where it is and its split sizes by origin.

vaswani-corpus
vaswani-corpus --cache-dir /data/cache --refresh
"""

import argparse
import time
from collections import Counter
from pathlib import Path

from vaswani_hf.data.default_corpus import CACHE_SUBDIR, default_cache_dir, load_default_corpus
from vaswani_hf.errors import user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--cache-dir", default=None, help=f"parent folder of the cache (default: {default_cache_dir()})"
    )
    parser.add_argument("--refresh", action="store_true", help="rebuild the corpus even if it is cached")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        corpus = load_default_corpus(args.cache_dir, refresh=args.refresh)
    except RuntimeError as err:
        parser.exit(1, f"error: {err}\n")
    elapsed = time.perf_counter() - started
    folder = Path(args.cache_dir) if args.cache_dir is not None else default_cache_dir()
    print(f"default corpus in {folder / CACHE_SUBDIR} ({elapsed:.1f} s)")
    for split, ds in corpus.items():
        origins = Counter(ds["origin"][:])
        print(f"{split:>16}: {ds.num_rows:6d} pairs (help {origins['help']}, dictionary {origins['dictionary']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
