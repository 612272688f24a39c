"""The installed commands (`[project.scripts]` in pyproject.toml), one module each, each a `main(argv=None)` over the
library: `vaswani-corpus`, `vaswani-train`, `vaswani-average`, `vaswani-translate`, `vaswani-evaluate`,
`vaswani-finetune`, `vaswani-model-card`, `vaswani-push`, `vaswani-export-ct2`, `vaswani-main-job`. `python -m
vaswani_hf.cli.<module>` runs the same (`accelerate launch -m vaswani_hf.cli.train` starts training on several
processes)."""
