"""Posteriors q(z|x): encoders that map x to a `tfd.Distribution` over z."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from vae_tf.networks import mlp
from vae_tf.tfp import Normal, tfd

MIN_SCALE = 1e-5


@keras.saving.register_keras_serializable(package="vae_tf")
class GaussianEncoder(keras.layers.Layer):
    """q(z|x) = N(z | mu(x), diag sigma(x)^2), sigma = softplus(raw) + 1e-5.

    `call(x)` returns the raw network output [batch, 2 * latent_dim];
    `distribution(x)` the posterior, batch shape [batch], event shape [latent_dim].
    """

    def __init__(self, latent_dim: int, hidden_units: Sequence[int], activation: str, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.hidden_units, self.activation = latent_dim, tuple(hidden_units), activation
        self.network = mlp(hidden_units, 2 * latent_dim, activation, name="encoder_mlp")

    def build(self, input_shape):
        self.network.build(input_shape)

    def call(self, x):
        return self.network(x)

    def moments(self, x) -> tuple[tf.Tensor, tf.Tensor]:
        loc, raw_scale = tf.split(self(x), 2, axis=-1)
        return loc, tf.nn.softplus(raw_scale) + MIN_SCALE

    def distribution(self, x) -> tfd.Distribution:
        loc, scale = self.moments(x)
        return tfd.Independent(Normal(loc=loc, scale=scale), 1)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim,
                "hidden_units": list(self.hidden_units), "activation": self.activation}


POSTERIORS = {"gaussian": GaussianEncoder}
