"""Priors p(z) over the latent space: `tfd.Distribution`s with event shape [latent_dim]."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.tfp import Normal, tfd


def standard_normal(latent_dim: int) -> tfd.Distribution:
    """p(z) = N(0, I)."""
    zeros = tf.zeros([latent_dim])
    return tfd.Independent(Normal(loc=zeros, scale=tf.ones_like(zeros)), 1)


PRIORS = {"standard_normal": standard_normal}


def make_prior(name: str, latent_dim: int) -> tfd.Distribution:
    return PRIORS[name](latent_dim)
