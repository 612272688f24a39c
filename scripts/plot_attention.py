"""Draw the attention weights of a saved model translating one sentence.

    python scripts/plot_attention.py outputs/main-job/model "Click the button to open the dialog." --output-dir attention
    python scripts/plot_attention.py MODEL_DIR "the house is small" --target "das Haus ist klein" --output-dir attention

Writes to --output-dir one PNG per attention kind and layer with one panel per head, `encoder_layer{n}.png` (encoder
self-attention), `decoder_layer{n}.png` (masked decoder self-attention) and `cross_layer{n}.png` (encoder-decoder
attention), layers counted from 1, plus `alignment.png`, the last layer's encoder-decoder attention averaged over its
heads. The target is --target when given, else the model's translation with its saved decoding (the paper's beam 4
unless --num-beams says otherwise). Needs matplotlib: pip install "vaswani_hf[plots]".
"""

import argparse

import torch

from vaswani_hf.analysis.attention_maps import compute_attention_maps, load_model, plot_attention_maps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="folder of a saved model (and its tokenizer, unless --tokenizer)")
    parser.add_argument("sentence", help="the source sentence")
    parser.add_argument("--target", help="the target sentence (default: the model's translation)")
    parser.add_argument("--tokenizer", help="folder of the tokenizer (default: model_dir)")
    parser.add_argument(
        "--output-dir",
        "--out-dir",
        dest="out_dir",
        default="attention",
        help="folder for the PNGs (default: ./attention)",
    )
    parser.add_argument("--num-beams", type=int, help="beam size of the translation (default: the model's, 4)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the PNGs (default: 100)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    generate_kwargs = {"num_beams": args.num_beams} if args.num_beams is not None else {}
    try:
        model, tokenizer = load_model(args.model_dir, args.tokenizer, device=device)
        targets = [args.target] if args.target is not None else None
        (maps,) = compute_attention_maps(model, tokenizer, [args.sentence], targets, **generate_kwargs)
        paths = plot_attention_maps(maps, args.out_dir, dpi=args.dpi)
    except (FileNotFoundError, ValueError, ImportError) as error:
        raise SystemExit(f"plot_attention.py: error: {error}") from error
    print(f"source: {' '.join(maps.source_tokens)}")
    print(f"target: {' '.join(maps.decoder_outputs)}")
    print(f"translation: {maps.translation}")
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
