"""The implicit posterior of Adversarial Variational Bayes: a sampler with no density."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from vae_tf import replicas
from vae_tf.networks import dense_layers, features, features_width, trunk
from vae_tf.posteriors.base import POSTERIORS, Draw, Posterior
from vae_tf.posteriors.fitted import fitted_gaussian, sample_moments
from vae_tf.tfp import tfd


@POSTERIORS.register("implicit")
class ImplicitPosterior(Posterior):
    """z = g(x, eps), eps ~ N(0, I_noise_dim), a network with the noise fed into every layer
    (h_1 = a(W_1 [f(x), eps]), ..., z = W_out [h_n, eps]; f the image trunk of `model.network`,
    the identity for mlp), so that q(z|x) can be any shape the
    network can make. Samples only: q(z|x) has no density we can evaluate, so it trains with an
    objective that needs none (avb), and log p(x) is estimated with a Gaussian fitted to its
    draws (`proposal`) or by AIS. Its mean and scale are estimated from `moment_samples` draws.
    """

    density = None

    def __init__(self, latent_dim: int, hidden_units: Sequence[int], activation: str, noise_dim: int,
                 moment_samples: int = 32, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.hidden_units, self.activation = tuple(hidden_units), activation
        self.noise_dim, self.moment_samples = noise_dim, moment_samples
        self.trunk = trunk(self.architecture, activation)
        self.hidden = dense_layers(hidden_units, activation)
        self.output_layer = keras.layers.Dense(latent_dim)

    @classmethod
    def from_params(cls, params, context):
        return cls(context.latent_dim, context.hidden_units, context.activation, params.noise_dim,
                   params.moment_samples, architecture=context.architecture, name="posterior")

    def build(self, input_shape):
        width = features_width(self.trunk, input_shape)
        for layer in [*self.hidden, self.output_layer]:
            layer.build((None, width + self.noise_dim))
            width = layer.units

    def call(self, h, eps):
        """z [..., L] for features h [..., F] (`draw`) and eps [..., noise_dim] of the same leading shape."""
        for layer in [*self.hidden, self.output_layer]:
            h = layer(tf.concat([h, eps], axis=-1))
        return h

    def draw(self, h, num_samples, seed, stop_density_gradient=False) -> Draw:
        eps = replicas.noise(tf.random.stateless_normal, [num_samples, tf.shape(h)[0], self.noise_dim], seed)
        f = features(self.trunk, h)
        return Draw(self(tf.broadcast_to(f, tf.concat([[num_samples], tf.shape(f)], axis=0)), eps), None, None)

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated from `moment_samples` draws."""
        return sample_moments(self.sample(h, self.moment_samples, seed))

    def proposal(self, h, seed, num_draws: int, scale: float) -> tfd.Distribution:
        """A Gaussian (full covariance) fitted to `num_draws` draws of q(z|x) of each example, its
        standard deviations times `scale`."""
        return fitted_gaussian(self.sample(h, num_draws, seed), scale)

    def proposal_and_moments(self, h, seeds, num_draws: int, scale: float):
        """The fitted proposal, and q's mean and scale from its `num_draws` draws (not from
        `moment_samples` more)."""
        z = self.sample(h, num_draws, seeds[0])
        return fitted_gaussian(z, scale), *sample_moments(z)

    def proposal_description(self, num_draws: int, scale: float) -> str:
        return f"Gaussian fitted to {num_draws} draws of q(z|x), scale x{scale:g}"

    def encode(self, h, seed) -> dict[str, tf.Tensor]:
        """`moment_samples` draws of q(z|x), samples [batch, n, L], and their mean and scale."""
        z = self.sample(h, self.moment_samples, seed)
        mean, scale = sample_moments(z)
        return {"mean": mean, "scale": scale, "samples": tf.transpose(z, [1, 0, 2])}

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation,
                "noise_dim": self.noise_dim, "moment_samples": self.moment_samples}
