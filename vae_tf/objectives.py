"""Objectives: pure functions of log-probabilities and samples, one value per example."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.tfp import tfd


def kl_divergence(q: tfd.Distribution, p: tfd.Distribution, z: tf.Tensor) -> tf.Tensor:
    """KL(q || p): analytic where TFP has it registered, else the Monte Carlo estimate
    log q(z) - log p(z) on samples z ~ q (shape [..., batch])."""
    try:
        return tfd.kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)


def elbo(log_likelihood: tf.Tensor, kl: tf.Tensor, kl_weight: float | tf.Tensor = 1.0) -> tf.Tensor:
    """ELBO(x) = E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)); beta = 1 gives the bound on log p(x)."""
    return log_likelihood - kl_weight * kl


def log_importance_weights(log_px_given_z: tf.Tensor, log_pz: tf.Tensor, log_qz: tf.Tensor) -> tf.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), for z ~ q(z|x)."""
    return log_px_given_z + log_pz - log_qz
