"""Posteriors q(z|x): encoders that map x to a `tfd.Distribution` over z, or (implicit) to
samples of z only, and the Gaussian fitted to such samples."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from vae_tf.networks import mlp
from vae_tf.tfp import Normal, tfb, tfd, tfp

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


@keras.saving.register_keras_serializable(package="vae_tf")
class ImplicitEncoder(keras.layers.Layer):
    """An implicit posterior: z = g(x, eps), eps ~ N(0, I_noise_dim), a network with the noise
    fed into every layer (h_1 = a(W_1 [x, eps]), ..., z = W_out [h_n, eps]), so that q(z|x) can
    be any shape the network can make. Samples only: q(z|x) has no density we can evaluate.

    `call(x, eps)` for x [..., D] and eps [..., noise_dim] (same leading shape) gives z [..., L].
    """

    def __init__(self, latent_dim: int, hidden_units: Sequence[int], activation: str, noise_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.hidden_units, self.activation = latent_dim, tuple(hidden_units), activation
        self.noise_dim = noise_dim
        self.hidden = [keras.layers.Dense(units, activation=activation) for units in hidden_units]
        self.output_layer = keras.layers.Dense(latent_dim)

    def build(self, input_shape):
        width = input_shape[-1]
        for layer in [*self.hidden, self.output_layer]:
            layer.build((None, width + self.noise_dim))
            width = layer.units

    def call(self, x, eps):
        h = x
        for layer in [*self.hidden, self.output_layer]:
            h = layer(tf.concat([h, eps], axis=-1))
        return h

    def sample(self, x, num_samples: int, seed) -> tf.Tensor:
        """z [num_samples, batch, L]: num_samples draws of q(z|x) for each row of x [batch, D]."""
        shape = tf.concat([[num_samples], tf.shape(x)[:1], [self.noise_dim]], axis=0)
        eps = tf.random.stateless_normal(shape, seed=seed, alg="philox")
        return self(tf.broadcast_to(x, tf.concat([[num_samples], tf.shape(x)], axis=0)), eps)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden_units": list(self.hidden_units),
                "activation": self.activation, "noise_dim": self.noise_dim}


def sample_moments(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The mean and standard deviation (n - 1 in the denominator, floored at MIN_SCALE) of
    draws z [n, batch, L] over the draws: [batch, L] each."""
    mean = tf.reduce_mean(z, axis=0)
    n = tf.cast(tf.shape(z)[0], z.dtype)
    variance = tf.reduce_sum(tf.square(z - mean), axis=0) / (n - 1.0)
    return mean, tf.sqrt(variance) + MIN_SCALE


def fitted_gaussian(z: tf.Tensor, scale: float = 1.0) -> tfd.Distribution:
    """N(mean, scale^2 Sigma), full covariance, fitted to draws z [n, batch, L] of each example's
    posterior: batch shape [batch], event shape [L]. `scale` > 1 widens it (heavier tails than
    the draws', which keeps importance weights bounded). Sampled as mean + chol(.) eps with the
    Philox normal; the covariance gets MIN_SCALE^2 on its diagonal so it stays positive definite."""
    mean = tf.reduce_mean(z, axis=0)
    covariance = scale**2 * tfp.stats.covariance(z, sample_axis=0, event_axis=-1)
    covariance += MIN_SCALE**2 * tf.eye(tf.shape(z)[-1], dtype=z.dtype)
    standard = tfd.Independent(Normal(tf.zeros_like(mean), tf.ones_like(mean)), 1)
    return tfd.TransformedDistribution(
        standard, tfb.Chain([tfb.Shift(mean), tfb.ScaleMatvecTriL(tf.linalg.cholesky(covariance))]))


POSTERIORS = {"gaussian": GaussianEncoder}
