"""How much of a training batch is padding: `vaswani-train`'s token-bucketed batches against the stock transformers
path (`DataCollatorForSeq2Seq` batches of a fixed number of sentences, in random order or with the Trainer's
`group_by_length=True`), on the built-in corpus tokenized as the small-cpu preset tokenizes it. The figures are
counts, not times: they are the same on every machine.

    HF_HUB_OFFLINE=1 python scripts/benchmark_padding.py --output docs/benchmarks/padding.json
"""

import argparse
import json

import numpy as np
import torch
from transformers.trainer_pt_utils import LengthGroupedSampler

from vaswani_hf.data.batching import padding_shares, token_batches
from vaswani_hf.files import write_atomic
from vaswani_hf.provenance import provenance
from vaswani_hf.training.corpus import prepare_corpus
from vaswani_hf.training.run_config import RunConfig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="the JSON file to write")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per Trainer batch (default: 32)")
    args = parser.parse_args(argv)

    from vaswani_hf.data.parallel import tokenize_pairs
    from vaswani_hf.tokenization import train_shared_bpe

    cfg = RunConfig.load("small-cpu", [])
    corpus = prepare_corpus(cfg.data)
    texts = (pair[lang] for pair in corpus["train"]["translation"] for lang in (cfg.data.src_lang, cfg.data.tgt_lang))
    tokenizer = train_shared_bpe(texts, vocab_size=cfg.data.vocab_size)
    train, _ = tokenize_pairs(
        corpus["train"],
        tokenizer,
        src_lang=cfg.data.src_lang,
        tgt_lang=cfg.data.tgt_lang,
        max_length=cfg.data.max_length,
    )
    src = [len(ids) for ids in train["input_ids"]]
    tgt = [len(ids) for ids in train["labels"]]
    n, size = len(src), args.batch_size

    def consecutive(order) -> list[list[int]]:
        order = list(order)
        return [order[i : i + size] for i in range(0, n, size)]

    shuffled = np.random.default_rng(0).permutation(n)
    grouped = LengthGroupedSampler(size, lengths=src, generator=torch.Generator().manual_seed(0))
    batchings = {
        "vaswani-train: token buckets": token_batches(src, tgt, cfg.train.max_tokens, rng=np.random.default_rng(0)),
        f"Trainer: {size} sentences, random order": consecutive(shuffled.tolist()),
        f"Trainer: {size} sentences, group_by_length": consecutive(iter(grouped)),
    }
    report = {
        "provenance": provenance(),
        "corpus": "default (train split), tokenized as the small-cpu preset: BPE of "
        f"{cfg.data.vocab_size}, pairs over {cfg.data.max_length} tokens dropped",
        "pairs": n,
        "max_tokens": cfg.train.max_tokens,
        "batchings": {name: padding_shares(batches, src, tgt) for name, batches in batchings.items()},
    }
    for name, shares in report["batchings"].items():
        print(f"{name:45s} {shares['batches']:6d} batches  {shares['padding_share']:.1%} padding", flush=True)
    write_atomic(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
