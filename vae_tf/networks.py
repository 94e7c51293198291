"""Multilayer perceptrons, the networks inside encoders and decoders."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def mlp(hidden_units: Sequence[int], output_units: int, activation: str, name: str) -> keras.Sequential:
    """Dense layers `hidden_units` with `activation`, then a linear layer of `output_units`."""
    layers = [keras.layers.Dense(units, activation=activation) for units in hidden_units]
    return keras.Sequential([*layers, keras.layers.Dense(output_units)], name=name)
