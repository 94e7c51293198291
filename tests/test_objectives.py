"""The objectives' bounds (vae_tf.objectives.bounds) against closed forms: the Gaussian KL, the ELBO
and the IWAE bound on a linear Gaussian model whose log p(x) is exact (importance sampling and the
ELBO surgery: test_evaluation.py)."""

import numpy as np
import tensorflow as tf

from vae_tf.objectives import bounds
from vae_tf.evaluation import importance_sampling
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

from tests.conftest import LinearGaussian


def diagonal_gaussian(loc, scale):
    return tfd.Independent(tfd.Normal(tf.constant(loc, tf.float32), tf.constant(scale, tf.float32)), 1)


def test_gaussian_kl_matches_formula_and_monte_carlo(rng):
    loc, scale = rng.normal(size=(3, 4)), rng.uniform(0.3, 2.0, size=(3, 4))
    q, p = diagonal_gaussian(loc, scale), standard_normal(4)
    z = q.sample(200_000, seed=[1, 2])
    kl = bounds.kl_divergence(q, p, z).numpy()
    formula = 0.5 * np.sum(scale**2 + loc**2 - 1.0 - 2.0 * np.log(scale), axis=-1)
    np.testing.assert_allclose(kl, formula, rtol=1e-5)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()
    stderr = log_ratio.std(axis=0) / np.sqrt(len(log_ratio))
    assert np.all(np.abs(log_ratio.mean(axis=0) - formula) < 4 * stderr)


def test_kl_falls_back_to_monte_carlo_without_a_closed_form():
    q = diagonal_gaussian([[0.5, -0.5]], [[1.0, 0.5]])
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                    diagonal_gaussian([[-1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]))
    z = q.sample(3, seed=[3, 4])
    expected = np.mean(q.log_prob(z) - mixture.log_prob(z), axis=0)  # mean over the 3 draws
    np.testing.assert_allclose(bounds.kl_divergence(q, mixture, z), expected, rtol=1e-6)


def test_elbo_and_log_weights():
    assert bounds.elbo(tf.constant(-10.0), tf.constant(2.0), 0.5).numpy() == -11.0
    assert bounds.log_importance_weights(-10.0, -1.0, -3.0) == -8.0


def test_iwae_bound_approaches_the_exact_log_likelihood_of_a_linear_gaussian_as_k_grows(rng):
    """L_K with an imperfect proposal: below log p(x), the gap shrinking as K grows."""
    model = LinearGaussian(rng)
    x = (rng.normal(size=(50, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(50, 6))).astype(np.float32)
    exact = model.exact_log_likelihood(x)
    posterior = model.proposal(shift=0.3, inflate=1.5)
    gaps = []
    for k in (1, 10, 100, 2000):
        replicates = [importance_sampling(x, posterior, model.likelihood, standard_normal(2), k, min(k, 500),
                                          tf.constant([k, r]))["log_likelihood"].numpy() for r in range(20)]
        gaps.append(float(np.mean(exact - np.mean(replicates, axis=0))))
    # gaps shrink (3.2, 0.06, 0.003 nats here) until the Monte Carlo error (~1e-3) dominates
    assert gaps[0] > 0.1 and gaps[0] > gaps[1] > gaps[2] > 0, gaps
    assert abs(gaps[-1]) < 0.005, gaps


def test_iwae_bound_is_the_log_mean_weight_and_finite_for_extreme_log_weights():
    log_w = tf.Variable([[-1e4, 3.0, 0.0], [1e4, 1.0, -1e4]])  # [K = 2, batch = 3]
    with tf.GradientTape() as tape:
        bound = bounds.iwae_bound(log_w)
        w = bounds.normalized_weights(log_w)
        surrogate = tf.reduce_sum(bounds.iwae_surrogate(log_w))
    np.testing.assert_allclose(bound, [1e4 - np.log(2), np.log((np.e**3 + np.e) / 2), -np.log(2)], rtol=1e-6)
    gradient = tape.gradient([bound, surrogate], log_w)
    assert np.all(np.isfinite(gradient)) and np.all(np.isfinite(w)) and np.isfinite(surrogate.numpy())
    np.testing.assert_allclose(tf.reduce_sum(w, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[:, 0], [0.0, 1.0])  # d L_K / d log w_k = w~_k
    with tf.GradientTape(persistent=True) as tape:
        bound_sum, surrogate_sum = tf.reduce_sum(bounds.iwae_bound(log_w)), tf.reduce_sum(bounds.iwae_surrogate(log_w))
    # the surrogate's gradient is the bound's: w~
    np.testing.assert_allclose(tape.gradient(surrogate_sum, log_w), tape.gradient(bound_sum, log_w), atol=1e-7)


