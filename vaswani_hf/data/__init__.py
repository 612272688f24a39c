"""Parallel data: corpus loaders and cleaning (`parallel`), the built-in English-German corpus (`default_corpus`), and
token-budget batches with their padding (`batching`). Imports the model code of this package nowhere."""
