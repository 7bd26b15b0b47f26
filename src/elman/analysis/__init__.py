"""Measuring what a trained simple RNN does: gradient flow, memory span, word-by-word reading."""
