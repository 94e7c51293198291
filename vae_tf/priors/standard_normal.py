"""The standard normal prior."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.priors.base import PRIORS, Prior
from vae_tf.tfp import Normal, tfd


def standard_normal(latent_dim: int) -> tfd.Distribution:
    """N(0, I_latent_dim)."""
    zeros = tf.zeros([latent_dim])
    return tfd.Independent(Normal(loc=zeros, scale=tf.ones_like(zeros)), 1)


@PRIORS.register("standard_normal")
class StandardNormalPrior(Prior):
    """p(z) = N(0, I): no variables."""

    def distribution(self, posterior=None) -> tfd.Distribution:
        return standard_normal(self.latent_dim)
