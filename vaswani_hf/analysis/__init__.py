"""Seeing what the model does: attention maps (`attention_maps`), the layer comparison of Table 1
(`layer_comparison`), and the figures' plotting helpers (`plotting`)."""
