"""Objectives: pure functions of log-probabilities and samples, one value per example.

Shapes: samples lead, [K, batch] for K draws z_k ~ q(z|x) of each example.
"""

from __future__ import annotations

import tensorflow as tf

from vae_tf.tfp import tfd


def kl_divergence(q: tfd.Distribution, p: tfd.Distribution, z: tf.Tensor) -> tf.Tensor:
    """KL(q || p): analytic where TFP has it registered, else the Monte Carlo estimate
    mean_k [log q(z_k) - log p(z_k)] on samples z ~ q (shape [K, batch, ...])."""
    try:
        return tfd.kl_divergence(q, p)
    except NotImplementedError:
        return tf.reduce_mean(q.log_prob(z) - p.log_prob(z), axis=0)


def elbo(log_likelihood: tf.Tensor, kl: tf.Tensor, kl_weight: float | tf.Tensor = 1.0) -> tf.Tensor:
    """ELBO(x) = E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)); beta = 1 gives the bound on log p(x)."""
    return log_likelihood - kl_weight * kl


def log_importance_weights(log_px_given_z: tf.Tensor, log_pz: tf.Tensor, log_qz: tf.Tensor) -> tf.Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x), for z ~ q(z|x)."""
    return log_px_given_z + log_pz - log_qz


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """L_K(x) = log (1/K) sum_k w_k = logsumexp_k(log w_k) - log K, over the leading axis of
    `log_weights` [K, batch]. In log space, so log-weights of any size stay finite. K = 1 gives
    the one-sample ELBO estimate; L_K <= L_{K+1} <= log p(x) in expectation (Burda et al. 2016)."""
    k = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(k)


def normalized_weights(log_weights: tf.Tensor) -> tf.Tensor:
    """w~_k = w_k / sum_j w_j over the leading axis, with no gradient: the weights of the IWAE
    gradient, grad L_K = sum_k w~_k grad log w_k."""
    return tf.stop_gradient(tf.nn.softmax(log_weights, axis=0))


def iwae_surrogate(log_weights: tf.Tensor) -> tf.Tensor:
    """sum_k w~_k log w_k with w~ held fixed, per example: equal in value to no bound, but its
    gradient is the IWAE gradient sum_k w~_k grad log w_k (the form DReG builds on)."""
    return tf.reduce_sum(normalized_weights(log_weights) * log_weights, axis=0)
