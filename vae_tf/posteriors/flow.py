"""Normalizing-flow posteriors: a Gaussian q(z_0|x) pushed through invertible steps."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.networks import encoder
from vae_tf.posteriors.base import Draw, Posterior
from vae_tf.posteriors.fitted import MOMENT_SAMPLES, sample_moments
from vae_tf.posteriors.gaussian import diagonal_gaussian, gaussian_draw
from vae_tf.tfp import tfb, tfd


class FlowPosterior(Posterior):
    """z_0 ~ N(mu(x), diag sigma(x)^2), z_T = f(z_0) for a bijector f built per x:
        log q(z_T|x) = log q(z_0|x) - log |det df/dz (z_0)|.
    The encoder network emits mu, sigma and `extra_outputs` more values, from which a kind's
    `flow(extra)` builds f. `distribution(h)` is TFP's `TransformedDistribution`; draws keep z_0,
    so their log q needs no inverse. The KL of the ELBO is the Monte Carlo one (no closed form).
    No DReG (its params' `supports_dreg`): log q as a function of z with the parameters held fixed
    would need the flow's parameters stopped inside its networks."""

    def __init__(self, num_steps: int, **kwargs):
        super().__init__(**kwargs)
        self.num_steps = num_steps
        self.network = encoder(self.architecture, self.hidden_units, 2 * self.latent_dim + self.extra_outputs,
                               self.activation, name="encoder_mlp")

    @property
    def extra_outputs(self) -> int:
        raise NotImplementedError

    def flow(self, extra) -> tfb.Bijector:
        """f, from the encoder's `extra_outputs` values per example [batch, extra_outputs]."""
        raise NotImplementedError

    def build(self, input_shape):
        self.network.build(input_shape)

    def call(self, h):
        return self.network(h)

    def base_and_flow(self, h) -> tuple[tfd.Distribution, tfb.Bijector]:
        """q(z_0|x) and f, from one pass of the encoder."""
        gaussian, extra = tf.split(self(h), [2 * self.latent_dim, self.extra_outputs], axis=-1)
        return diagonal_gaussian(gaussian), self.flow(extra)

    def distribution(self, h) -> tfd.Distribution:
        return tfd.TransformedDistribution(*self.base_and_flow(h))

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine) -> Draw:
        base, flow = self.base_and_flow(h)
        z0 = gaussian_draw(base, num_samples, seed)
        return Draw(flow.forward(z0.z), z0.log_q - flow.forward_log_det_jacobian(z0.z, event_ndims=1), None)

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated from `MOMENT_SAMPLES` draws (a flow's mean has no closed form)."""
        return sample_moments(self.draw(h, MOMENT_SAMPLES, seed).z)
