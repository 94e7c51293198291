"""The bounds and losses as pure functions of log-probabilities and samples, one value per example.

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


def grouped_iwae_bound(log_weights: tf.Tensor, groups: int) -> tf.Tensor:
    """L_{M,K}(x) = (1/M) sum_m L_K(x; group m), the M = `groups` groups of K consecutive draws of
    `log_weights` [M K, batch]: MIWAE's bound (Rainforth et al. 2018), L_K in expectation, with
    M times the draws and an encoder gradient whose signal-to-noise ratio grows with M."""
    grouped = tf.reshape(log_weights, [groups, -1, tf.shape(log_weights)[-1]])  # [M, K, batch]
    return tf.reduce_mean(iwae_bound(tf.transpose(grouped, [1, 0, 2])), axis=0)


def normalized_weights(log_weights: tf.Tensor) -> tf.Tensor:
    """w~_k = w_k / sum_j w_j over the leading axis, with no gradient: the weights of the IWAE
    gradient, grad L_K = sum_k w~_k grad log w_k."""
    return tf.stop_gradient(tf.nn.softmax(log_weights, axis=0))


def iwae_surrogate(log_weights: tf.Tensor) -> tf.Tensor:
    """sum_k w~_k log w_k with w~ held fixed, per example: equal in value to no bound, but its
    gradient is the IWAE gradient sum_k w~_k grad log w_k (the form DReG builds on)."""
    return tf.reduce_sum(normalized_weights(log_weights) * log_weights, axis=0)


def discriminator_loss(t_posterior: tf.Tensor, t_reference: tf.Tensor) -> tf.Tensor:
    """The logistic loss of a discriminator T(x, z) (logits) telling z ~ q(z|x) (label 1) from
    z ~ r(z) (label 0): -log sigmoid(T(x, z_q)) - log(1 - sigmoid(T(x, z_r))), in the stable form
    softplus(-T_q) + softplus(T_r). Its minimiser is T*(x, z) = log q(z|x) - log r(z) (the
    density-ratio trick; Mescheder et al. 2017, Prop. 1)."""
    return tf.nn.softplus(-t_posterior) + tf.nn.softplus(t_reference)


def discriminator_accuracy(t_posterior: tf.Tensor, t_reference: tf.Tensor) -> tf.Tensor:
    """The fraction of the pair classified right: (1[T_q > 0] + 1[T_r < 0]) / 2. 1/2 when T cannot
    tell q from r, 1 when it always can."""
    return 0.5 * (tf.cast(t_posterior > 0, t_posterior.dtype) + tf.cast(t_reference < 0, t_reference.dtype))


def avb_kl(t: tf.Tensor, log_reference: tf.Tensor, log_prior: tf.Tensor) -> tf.Tensor:
    """log q(z|x) - log p(z) at z ~ q(z|x), estimated with a discriminator T ~ log q - log r:
    T(x, z) + log r(z|x) - log p(z). Its mean over z ~ q estimates KL(q(z|x) || p(z)); r = p
    gives plain AVB, r a Gaussian matched to q's moments gives adaptive contrast."""
    return t + log_reference - log_prior
