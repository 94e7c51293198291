"""The planar-flow posterior (Rezende & Mohamed 2015)."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.bijectors import Planar
from vae_tf.posteriors.base import POSTERIORS
from vae_tf.posteriors.flow import FlowPosterior
from vae_tf.tfp import tfb


@POSTERIORS.register("planar")
class PlanarPosterior(FlowPosterior):
    """f = f_T o ... o f_1, each a planar step z + u_hat tanh(w.z + b) (`Planar`) whose u_t, w_t,
    b_t the encoder emits for each x (amortized)."""

    @property
    def extra_outputs(self) -> int:
        return self.num_steps * (2 * self.latent_dim + 1)

    def flow(self, extra) -> tfb.Bijector:
        L = self.latent_dim
        steps = tf.reshape(extra, [-1, self.num_steps, 2 * L + 1])
        planar = [Planar(steps[:, t, :L], steps[:, t, L:2 * L], steps[:, t, 2 * L]) for t in range(self.num_steps)]
        return tfb.Chain(planar[::-1])  # Chain applies its last bijector first
