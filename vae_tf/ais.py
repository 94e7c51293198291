"""Annealed importance sampling (AIS; Neal 2001) of log p(x) for a decoder p(x|z) and a prior
p(z). It needs no posterior, so it measures models with and without a density for q(z|x) alike
(Wu et al. 2017 use it to evaluate decoder-based models)."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from vae_tf.tfp import tfd, tfp


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> tf.Tensor:
    """beta_0 = 0 < beta_1 < ... < beta_T = 1, spaced as a sigmoid over [-delta, delta] (Grosse
    et al. 2015): small steps at both ends, where the intermediate distributions change fastest."""
    s = tf.sigmoid(tf.linspace(-delta, delta, num_steps + 1))
    return (s - s[0]) / (s[-1] - s[0])


def ais_log_likelihood(x, likelihood: Callable[[tf.Tensor], tfd.Distribution], prior: tfd.Distribution,
                       num_chains: int, num_steps: int, leapfrog_steps: int, step_size: float,
                       seed) -> dict[str, tf.Tensor]:
    """log p(x) by AIS from p(z) to p(z|x), `num_chains` independent chains per example.

    Intermediate targets pi_t(z) ~ p(z) p(x|z)^beta_t (geometric path, `sigmoid_schedule`).
    Each chain starts at z_0 ~ p(z); at step t it adds (beta_t - beta_{t-1}) log p(x|z_{t-1}) to
    its log-weight and moves z by one HMC transition that leaves pi_t invariant. Then

        log p(x) ~= logsumexp_c log w_c - log C,

    a stochastic lower bound (Jensen) whose gap shrinks as num_steps grows. HMC's step size (one
    per example, shared by its chains, starting at `step_size`) is adapted towards an acceptance
    rate of 0.65 as the chains go (TFP's `SimpleStepSizeAdaptation`), as in Wu et al. 2017.

    The loop is ours, the kernels TFP's: `tfp.mcmc.sample_annealed_importance_chain` carries the
    kernel's cached log-density and gradient from pi_{t-1} into the step for pi_t, so its HMC
    accepts or rejects against the wrong target; here each step bootstraps the kernel at the
    current state for its own target.
    x: [batch, D]; seed: a stateless seed [2]. Returns log_likelihood [batch] and acceptance
    [batch] (the mean HMC acceptance probability over steps and chains).
    """
    batch = tf.shape(x)[0]
    betas = sigmoid_schedule(num_steps)
    start_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    z = prior.sample([num_chains, batch], seed=start_seed)  # [C, batch, L]

    def body(t, z, log_w, step_size, acceptance):
        log_w += (betas[t + 1] - betas[t]) * likelihood(z).log_prob(x)

        def target(z):
            return prior.log_prob(z) + betas[t + 1] * likelihood(z).log_prob(x)

        kernel = tfp.mcmc.SimpleStepSizeAdaptation(
            tfp.mcmc.HamiltonianMonteCarlo(target, step_size=step_size, num_leapfrog_steps=leapfrog_steps),
            num_adaptation_steps=num_steps + 1, target_accept_prob=0.65)
        z, results = kernel.one_step(z, kernel.bootstrap_results(z),
                                     seed=tf.random.experimental.stateless_fold_in(chain_seed, t))
        accepted = tf.exp(tf.minimum(results.inner_results.log_accept_ratio, 0.0))
        return t + 1, z, log_w, results.new_step_size, acceptance + tf.reduce_mean(accepted, axis=0)

    start = (tf.constant(0), z, tf.zeros([num_chains, batch]), tf.fill([batch, 1], step_size), tf.zeros([batch]))
    _, _, log_w, _, acceptance = tf.while_loop(lambda t, *_: t < num_steps, body, start)
    return {"log_likelihood": tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(float(num_chains)),
            "acceptance": acceptance / num_steps}
