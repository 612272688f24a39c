"""Seeing what the model does: attention maps (`attention_maps`), the layer comparison of Table 1
(`layer_comparison`), whole models measured as sentences grow (`sequence_measures`: step time by length, gradient
flow by distance, BLEU by length), and the figures' plotting helpers (`plotting`)."""
