"""Annealed importance sampling (AIS; Neal 2001) of log p(x) for a decoder p(x|z) and a prior
p(z), from the prior or from an approximate posterior. From the prior it needs no posterior, so
it measures models with and without a density for q(z|x) alike (Wu et al. 2017 use it to
evaluate decoder-based models); from q(z|x) it starts near p(z|x), which a multimodal prior
(500 VampPrior or mixture components) keeps chains from reaching in a few hundred steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import tensorflow as tf

from vae_tf.tfp import tfd, tfp


def sigmoid_schedule(num_steps: int, delta: float = 4.0) -> tf.Tensor:
    """beta_0 = 0 < beta_1 < ... < beta_T = 1, spaced as a sigmoid over [-delta, delta] (Grosse
    et al. 2015): small steps at both ends, where the intermediate distributions change fastest."""
    s = tf.sigmoid(tf.linspace(-delta, delta, num_steps + 1))
    return (s - s[0]) / (s[-1] - s[0])


def ais_log_likelihood(x, likelihood: Callable[[tf.Tensor], tfd.Distribution], prior: tfd.Distribution,
                       num_chains: int, num_steps: int, leapfrog_steps: int, step_size: float,
                       seed, start: Optional[tfd.Distribution] = None,
                       reverse_from: Optional[tf.Tensor] = None) -> dict[str, tf.Tensor]:
    """log p(x) by AIS from r(z) to p(z|x), `num_chains` independent chains per example; r is
    `start` (batch shape [batch], event [L]: q(z|x)) or, if None, the prior p(z).

    `reverse_from`: z [batch, L], an exact draw of p(z|x) (the z that made a simulated x): the
    chains run the schedule backwards from it, to r, and the result is a stochastic upper bound
    on log p(x), -(logsumexp_c log w_c - log C) with E[w] = 1 / p(x): beside the forward lower
    bound on the same simulated data, it bounds AIS's error (BDMC, Grosse et al. 2015).

    Intermediate targets pi_t(z) ~ r(z) exp(beta_t l(z)), l(z) = log p(x, z) - log r(z)
    (geometric path, `sigmoid_schedule`; from the prior l(z) = log p(x|z)). Each chain starts at
    z_0 ~ r(z); at step t it adds (beta_t - beta_{t-1}) l(z_{t-1}) to its log-weight and moves z by
    one HMC transition that leaves pi_t invariant. Then

        log p(x) ~= logsumexp_c log w_c - log C,

    a stochastic lower bound (Jensen) whose gap shrinks as num_steps grows. HMC's step size (one
    per example, shared by its chains, starting at `step_size`) is adapted towards an acceptance
    rate of 0.65 as the chains go (TFP's `SimpleStepSizeAdaptation`), as in Wu et al. 2017.

    The loop is ours, the kernels TFP's. An HMC step needs log pi_t and its gradient at the
    current state; the decoder's forward and backward pass that gave them for pi_{t-1} (the last
    leapfrog step's) give them for pi_t too, once split into r's part and l's: with
    s = log pi_{t-1}(z) and g its gradient,
        l(z) = (s - log r(z)) / beta_{t-1},  grad l = (g - grad log r(z)) / beta_{t-1},
        log pi_t(z) = log r(z) + beta_t l(z),  grad log pi_t = grad log r(z) + beta_t grad l,
    and l(z) is also the weight's increment. So a step costs the leapfrog's decoder passes alone
    (r's are cheap), and HMC accepts against the right target (TFP's
    `sample_annealed_importance_chain` carries s and g over unchanged, the wrong target).
    x: [batch, D]; seed: a stateless seed [2]. Returns log_likelihood [batch] and acceptance
    [batch] (the mean HMC acceptance probability over steps and chains).
    """
    batch = tf.shape(x)[0]
    betas = sigmoid_schedule(num_steps)
    start_seed, chain_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if start is None:
        # [C, batch, L]; the shape as one tensor: a list holding a tensor fails TFP's joint distributions
        r, z = prior, prior.sample(tf.stack([num_chains, batch]), seed=start_seed)

        def log_ratio(z):
            return likelihood(z).log_prob(x)
    else:
        r, z = start, start.sample(num_chains, seed=start_seed)

        def log_ratio(z):
            return prior.log_prob(z) + likelihood(z).log_prob(x) - start.log_prob(z)
    if reverse_from is not None:  # from p(z|x) back to r: the increments (beta_{t-1} - beta_t) l are negative
        betas, z = tf.reverse(betas, [0]), tf.broadcast_to(reverse_from, tf.shape(z))

    def prior_part(z):
        """log r(z) [C, batch] and its gradient in z (a new tensor: a flow's bijector cache would
        hand back the inverse of its own draws, z_0, with no gradient path from z)."""
        z = tf.identity(z)
        with tf.GradientTape() as tape:
            tape.watch(z)
            log_prior = of_chains(r.log_prob(z), z)
        return log_prior, tf.ensure_shape(tape.gradient(log_prior, z), z.shape)

    def of_chains(log_density, z):
        """[C, batch], as the loop's variables must keep it: TFP's joint distributions (a stack's
        p(z), `vae_tf.models.depth`) give their log-density a shape known only when run."""
        return tf.ensure_shape(log_density, z.shape[:-1])

    def kernel(beta, size):
        return tfp.mcmc.SimpleStepSizeAdaptation(
            tfp.mcmc.HamiltonianMonteCarlo(lambda z: of_chains(r.log_prob(z) + beta * log_ratio(z), z),
                                           step_size=size, num_leapfrog_steps=leapfrog_steps),
            num_adaptation_steps=num_steps + 1, target_accept_prob=0.65)

    def split(results, z, beta):
        """(log r(z), its gradient, l(z), its gradient) [C, batch(, L)] at the state z, from
        `results`' log pi and gradient there (target beta)."""
        log_prior, grad_prior = prior_part(z)
        accepted = results.inner_results.accepted_results
        log_lik = (accepted.target_log_prob - log_prior) / beta
        return log_prior, grad_prior, log_lik, (accepted.grads_target_log_prob[0] - grad_prior) / beta

    def retarget(results, parts, beta):
        """`results` with log pi and its gradient at the current state for the target of `beta`."""
        log_prior, grad_prior, log_lik, grad_lik = parts
        accepted = results.inner_results.accepted_results._replace(
            target_log_prob=log_prior + beta * log_lik, grads_target_log_prob=[grad_prior + beta * grad_lik])
        return results._replace(inner_results=results.inner_results._replace(accepted_results=accepted))

    def body(t, z, results, parts, log_w, acceptance):
        beta = betas[t + 1]
        log_w += (beta - betas[t]) * parts[2]  # l(z_{t-1})
        z, results = kernel(beta, results.new_step_size).one_step(
            z, retarget(results, parts, beta), seed=tf.random.experimental.stateless_fold_in(chain_seed, t))
        accepted = tf.exp(tf.minimum(results.inner_results.log_accept_ratio, 0.0))
        return t + 1, z, results, split(results, z, beta), log_w, acceptance + tf.reduce_mean(accepted, axis=0)

    results = kernel(betas[1], tf.fill([batch, 1], step_size)).bootstrap_results(z)  # the one pass outside
    initial = (tf.constant(0), z, results, split(results, z, betas[1]), tf.zeros([num_chains, batch]),
               tf.zeros([batch]))
    *_, log_w, acceptance = tf.while_loop(lambda t, *_: t < num_steps, body, initial)
    estimate = tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(float(num_chains))
    return {"log_likelihood": estimate if reverse_from is None else -estimate, "acceptance": acceptance / num_steps}
