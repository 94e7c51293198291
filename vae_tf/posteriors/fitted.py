"""Gaussians estimated from draws of a posterior: the moments of an implicit q, and the
importance-sampling proposal fitted to its draws."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.posteriors.base import MIN_SCALE
from vae_tf.tfp import Normal, tfb, tfd, tfp

MOMENT_SAMPLES = 256  # draws the mean and scale of a q(z|x) without closed-form moments are estimated from


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
