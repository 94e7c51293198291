"""A normalizing-flow posterior: planar steps on a Gaussian (Rezende & Mohamed 2015)."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vae_tf.bijectors import Planar
from vae_tf.networks import mlp
from vae_tf.posteriors.base import MIN_SCALE, POSTERIORS, Draw, Posterior
from vae_tf.posteriors.gaussian import gaussian_draw
from vae_tf.tfp import Normal, tfb, tfd

MOMENT_SAMPLES = 256  # draws the mean and scale of q(z|x) are estimated from (encode, AIS-free diagnostics)

@POSTERIORS.register("planar")
class PlanarPosterior(Posterior):
    """z_0 ~ N(mu(x), diag sigma(x)^2), z_T = f_T o ... o f_1(z_0), each f_t a planar step whose
    u_t, w_t, b_t the encoder emits with mu and sigma (amortized):
        log q(z_T|x) = log q(z_0|x) - sum_t log |det df_t/dz (z_{t-1})|.
    `distribution(h)` is TFP's `TransformedDistribution` of the Gaussian by the chain. Draws keep
    z_0, so their log q needs no inverse; a density at any other z inverts each step
    numerically (`Planar`). No DReG: with the parameters held fixed, log q as a function of z
    would need that numeric inverse to carry gradients."""

    supports_dreg = False

    def __init__(self, latent_dim: int, hidden_units: Sequence[int], activation: str, num_steps: int, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.hidden_units, self.activation, self.num_steps = tuple(hidden_units), activation, num_steps
        self.network = mlp(hidden_units, 2 * latent_dim + num_steps * (2 * latent_dim + 1), activation,
                           name="encoder_mlp")

    @classmethod
    def from_params(cls, params, context):
        return cls(context.latent_dim, context.hidden_units, context.activation, params.num_steps, name="posterior")

    def build(self, input_shape):
        self.network.build(input_shape)

    def call(self, h):
        return self.network(h)

    def base_and_flow(self, h) -> tuple[tfd.Distribution, tfb.Bijector]:
        """q(z_0|x) and the chain f_T o ... o f_1, built from one pass of the encoder."""
        L = self.latent_dim
        loc, raw_scale, steps = tf.split(self(h), [L, L, self.num_steps * (2 * L + 1)], axis=-1)
        steps = tf.reshape(steps, [-1, self.num_steps, 2 * L + 1])
        base = tfd.Independent(Normal(loc=loc, scale=tf.nn.softplus(raw_scale) + MIN_SCALE), 1)
        planar = [Planar(steps[:, t, :L], steps[:, t, L:2 * L], steps[:, t, 2 * L]) for t in range(self.num_steps)]
        return base, tfb.Chain(planar[::-1])  # Chain applies its last bijector first

    def distribution(self, h) -> tfd.Distribution:
        return tfd.TransformedDistribution(*self.base_and_flow(h))

    def draw(self, h, num_samples, seed, stop_density_gradient=False) -> Draw:
        if stop_density_gradient:
            raise NotImplementedError("the planar posterior has no DReG form (see the class docstring)")
        base, flow = self.base_and_flow(h)
        z0 = gaussian_draw(base, num_samples, seed)
        return Draw(flow.forward(z0.z), z0.log_q - flow.forward_log_det_jacobian(z0.z, event_ndims=1), None)

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated from `MOMENT_SAMPLES` draws (the flow's mean has no closed form)."""
        z = self.sample(h, MOMENT_SAMPLES, seed)
        return tf.reduce_mean(z, axis=0), tf.math.reduce_std(z, axis=0) + MIN_SCALE

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation,
                "num_steps": self.num_steps}

