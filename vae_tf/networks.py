"""The networks inside the parts: multilayer perceptrons, and the masked autoregressive network of
autoregressive flows."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf


def mlp(hidden_units: Sequence[int], output_units: int, activation: str, name: str) -> keras.Sequential:
    """Dense layers `hidden_units` with `activation`, then a linear layer of `output_units`."""
    layers = [keras.layers.Dense(units, activation=activation) for units in hidden_units]
    return keras.Sequential([*layers, keras.layers.Dense(output_units)], name=name)


def apply_to_leading(network, inputs: tf.Tensor) -> tf.Tensor:
    """`network` (built for [batch, D]) on inputs of any leading shape [..., D] (e.g. [K, batch, D]),
    flattened into its batch and reshaped after: [..., output units]."""
    flat = network(tf.reshape(inputs, [-1, inputs.shape[-1]]))
    return tf.reshape(flat, tf.concat([tf.shape(inputs)[:-1], tf.shape(flat)[-1:]], 0))


@keras.saving.register_keras_serializable(package="vae_tf")
class MaskedAutoregressive(keras.layers.Layer):
    """MADE (Germain et al. 2015), conditioned on a context or not: (z [..., L], c [..., C] or
    None) -> (shift, log_scale) [..., L] each, output i a function of z_1..z_{i-1} (and c) only.

    Degrees: input i has i (1..L), each hidden unit one in 1..L-1 (cyclic); a hidden unit sees
    the inputs of degree <= its own, output i the hidden units of degree < i. The context feeds
    the first hidden layer unmasked. The output layer starts at zero: each step starts as the
    identity. (TFP's `AutoregressiveNetwork` is a tf_keras layer a Keras 3 model cannot track.)"""

    def __init__(self, hidden_units: Sequence[int], activation: str, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units, self.activation = tuple(hidden_units), activation

    def build(self, input_shape):
        """input_shape: z's shape, or the pair (z's, c's)."""
        conditioned = isinstance(input_shape[0], (tuple, list))
        (*_, latent), (*_, context) = input_shape if conditioned else (input_shape, (0,))
        degrees = [np.arange(1, latent + 1)]
        degrees += [np.arange(units) % max(1, latent - 1) + 1 for units in self.hidden_units]
        self.masks, self.kernels, self.biases = [], [], []
        for i, units in enumerate(self.hidden_units):
            self.masks.append((degrees[i + 1][None, :] >= degrees[i][:, None]).astype("float32"))
            self.kernels.append(self.add_weight(shape=(len(degrees[i]), units), initializer="glorot_uniform",
                                                name=f"kernel_{i}"))
            self.biases.append(self.add_weight(shape=(units,), initializer="zeros", name=f"bias_{i}"))
        self.context_kernel = (self.add_weight(shape=(context, self.hidden_units[0]), initializer="glorot_uniform",
                                               name="context_kernel") if context else None)
        output_mask = (np.arange(1, latent + 1)[None, :] > degrees[-1][:, None]).astype("float32")
        self.masks.append(np.concatenate([output_mask, output_mask], axis=1))
        self.kernels.append(self.add_weight(shape=(len(degrees[-1]), 2 * latent), initializer="zeros",
                                            name="kernel_out"))
        self.biases.append(self.add_weight(shape=(2 * latent,), initializer="zeros", name="bias_out"))

    def call(self, z, context=None):
        act = keras.activations.get(self.activation)
        h = z
        for i, (mask, kernel, bias) in enumerate(zip(self.masks, self.kernels, self.biases)):
            h = keras.ops.matmul(h, kernel * mask) + bias
            if i == 0 and context is not None:
                h = h + keras.ops.matmul(context, self.context_kernel)
            if i < len(self.hidden_units):
                h = act(h)
        shift, log_scale = keras.ops.split(h, 2, axis=-1)
        return shift, log_scale

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation}
