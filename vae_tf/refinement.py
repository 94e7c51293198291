"""Semi-amortized inference (Kim et al. 2018): the encoder's Gaussian q(z|x) refined for each
example by gradient steps on that example's ELBO, in training (`objective.refinement`: the
decoder learns from the refined q) or at evaluation only (a tighter importance-sampling proposal
for a trained model: it closes part of the amortization gap)."""

from __future__ import annotations

import math

import tensorflow as tf

from vae_tf.tfp import Normal, random_algorithm, tfd


GRADIENTS = ("through_steps", "straight_through", "stopped")


def refine(q: tfd.Distribution, x, likelihood, prior: tfd.Distribution, seed, steps: int, step_size: float,
           num_draws: int, max_gradient_norm: float, gradient: str = "stopped") -> tfd.Distribution:
    """q = N(mu, diag sigma^2) (batch [B], event [L]) after `steps` steps of gradient ascent in
    lambda = (mu, s = log sigma) on each example's ELBO, estimated with S = `num_draws` fresh draws a step:

        ELBO(mu, s) ~= (1/S) sum_k [log p(x|z_k) + log p(z_k)] + sum_j s_j + (L/2) log(2 pi e),
        z_k = mu + e^s eps_k,   (mu, s) <- (mu, s) + step_size * clip(grad, max_gradient_norm),

    the gradient of each example's own ELBO (examples do not interact), clipped to a norm of at
    most `max_gradient_norm` per example as in Kim et al. How the refined lambda_K depends on the
    encoder's lambda_0 and on the decoder, for a loss built on it (`gradient`):
    - through_steps: through every step (SA-VAE; second derivatives of the ELBO);
    - straight_through: lambda_K = lambda_0 + stop_gradient(lambda_K - lambda_0), the steps'
      Jacobian taken as the identity (one backward pass; the decoder learns from lambda_K alone);
    - stopped: lambda_K is a constant (evaluation).
    likelihood: z [..., L] -> p(x|z); seed: a stateless seed [2]."""
    if not (isinstance(q, tfd.Independent) and isinstance(q.distribution, tfd.Normal)):
        raise ValueError(f"refinement needs a diagonal Gaussian q(z|x), got {type(q).__name__}")
    start = (tf.convert_to_tensor(q.distribution.loc), tf.math.log(q.distribution.scale))
    loc, log_scale = start if gradient == "through_steps" else (tf.stop_gradient(p) for p in start)
    latent = loc.shape[-1]

    def elbo(loc, log_scale, step_seed):
        eps = tf.random.stateless_normal(tf.concat([[num_draws], tf.shape(loc)], 0), step_seed,
                                          alg=random_algorithm())
        z = loc + tf.exp(log_scale) * eps
        joint = tf.reduce_mean(likelihood(z).log_prob(x) + prior.log_prob(z), axis=0)
        return joint + tf.reduce_sum(log_scale, axis=-1) + 0.5 * latent * math.log(2 * math.pi * math.e)

    def step(t, loc, log_scale):
        with tf.GradientTape() as tape:
            tape.watch([loc, log_scale])
            total = tf.reduce_sum(elbo(loc, log_scale, tf.random.experimental.stateless_fold_in(seed, t)))
        gradient = tf.concat(tape.gradient(total, [loc, log_scale]), axis=-1)  # [B, 2L], each example's own
        gradient = step_size * tf.clip_by_norm(gradient, max_gradient_norm, axes=[-1])
        return loc + gradient[..., :latent], log_scale + gradient[..., latent:]

    for t in range(steps):  # unrolled: XLA cannot differentiate a loop's gradient of dynamic shapes
        loc, log_scale = step(t, loc, log_scale)
    if gradient == "straight_through":
        loc, log_scale = (p0 + tf.stop_gradient(p - p0) for p0, p in zip(start, (loc, log_scale)))
    return tfd.Independent(Normal(loc, tf.exp(log_scale)), 1)
