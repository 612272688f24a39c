"""`evaluate` metric modules shipped with the package, one folder each, loaded with `evaluate.load(folder)`.

See `vaswani_hf.evaluation.load_metric`.
"""
