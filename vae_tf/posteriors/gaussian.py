"""The diagonal Gaussian posterior of the VAE."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from vae_tf import replicas
from vae_tf.networks import encoder
from vae_tf.posteriors.base import MIN_SCALE, POSTERIORS, Draw, Posterior, Refine
from vae_tf.tfp import Normal, tfd


@POSTERIORS.register("gaussian")
class GaussianPosterior(Posterior):
    """q(z|x) = N(z | mu(x), diag sigma(x)^2), sigma = softplus(raw) + 1e-5, a network giving
    [mu, raw]; draws z = mu + sigma * eps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.network = encoder(self.architecture, self.hidden_units, 2 * self.latent_dim, self.activation,
                               name="encoder_mlp")

    def build(self, input_shape):
        self.network.build(input_shape)

    def call(self, h):
        return self.network(h)

    def moments(self, h, seed=None) -> tuple[tf.Tensor, tf.Tensor]:
        """Exact (`seed` unused)."""
        q = self.distribution(h).distribution
        return q.loc, q.scale

    def distribution(self, h) -> tfd.Distribution:
        return diagonal_gaussian(self(h))

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine: Optional[Refine]) -> Draw:
        """The network runs once for z, log q and q."""
        q = self.distribution(h)
        return gaussian_draw(q if refine is None else refine(q), num_samples, seed, stop_density_gradient)


def diagonal_gaussian(output: tf.Tensor) -> tfd.Distribution:
    """N(mu, diag sigma^2) from a network's output [..., 2L] = [mu, raw], sigma = softplus(raw) +
    MIN_SCALE: batch shape [...], event shape [L]."""
    loc, raw_scale = tf.split(output, 2, axis=-1)
    return tfd.Independent(Normal(loc=loc, scale=tf.nn.softplus(raw_scale) + MIN_SCALE), 1)


def gaussian_draw(q: tfd.Distribution, num_samples: int, seed, stop_density_gradient: bool = False,
                  batch_axis: int = 1) -> Draw:
    """K reparameterized draws z = mu + sigma * eps of q = Independent(Normal(mu, sigma)) with batch
    shape [batch] (or [..., batch], the examples on `batch_axis` of z), eps ~ N(0, I)
    (`replicas.noise`: a replica's rows of the global minibatch's draws), and log q at them
    (with q's parameters held fixed if `stop_density_gradient`)."""
    loc, scale = q.distribution.loc, q.distribution.scale
    eps = replicas.noise(tf.random.stateless_normal, [num_samples, *tf.unstack(tf.shape(loc))], seed, batch_axis)
    z = eps * scale + loc
    density = tf.nest.map_structure(tf.stop_gradient, q, expand_composites=True) if stop_density_gradient else q
    return Draw(z, density.log_prob(z), q)
