"""Closed forms: the Gaussian KL, a linear Gaussian model whose log p(x) is exact, and the ELBO surgery."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vae_tf import evaluation
from vae_tf.objectives import bounds
from vae_tf.evaluation import importance_sampling
from vae_tf.priors import standard_normal
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


def test_importance_sampling_recovers_the_exact_log_likelihood_of_a_linear_gaussian(rng):
    model = LinearGaussian(rng)
    x = (rng.normal(size=(20, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(20, 6))).astype(np.float32)
    exact = model.exact_log_likelihood(x)
    posterior = model.proposal(shift=0.2, inflate=1.3)
    estimate = importance_sampling(x, posterior, model.likelihood, standard_normal(2), 5000, 1000, tf.constant([5, 6]))
    assert abs(np.mean(estimate["log_likelihood"].numpy() - exact)) < 0.05
    assert np.max(np.abs(estimate["log_likelihood"].numpy() - exact)) < 0.2
    elbo = estimate["reconstruction"] - tfd.kl_divergence(posterior(x), standard_normal(2))
    assert np.all(elbo.numpy() < exact)  # a bound is not a log-likelihood: the gap is KL(q || p(z|x)) > 0
    assert np.mean(exact - elbo.numpy()) > 0.05


@pytest.mark.parametrize(("num_samples", "chunk_size"), [(1, 4), (7, 3), (12, 4), (5, 100)])
def test_exact_posterior_gives_exact_log_likelihood_for_any_k_and_chunking(rng, num_samples, chunk_size):
    """With the true posterior as proposal every importance weight equals p(x): no variance,
    so any K and any chunking (masked last chunk included) must return log p(x) itself."""
    model = LinearGaussian(rng, d=3, latent=2)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    estimate = importance_sampling(x, model.exact_posterior, model.likelihood, standard_normal(2),
                                   tf.constant(num_samples), chunk_size, tf.constant([1, 2]))
    np.testing.assert_allclose(estimate["log_likelihood"], model.exact_log_likelihood(x), atol=1e-4)


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


def batch_of_gaussians(loc, scale):
    return tfd.Independent(tfd.Normal(tf.constant(loc, tf.float32), tf.constant(scale, tf.float32)), 1)


def test_elbo_surgery_splits_the_kl_term_into_information_and_the_hole(rng):
    """mean_n KL(q(z|x_n) || p) = I + KL(q(z) || p): against the closed-form KL term, within
    Monte Carlo error; I is at most log N."""
    n, latent = 50, 3
    q = batch_of_gaussians(rng.normal(size=(n, latent)), rng.uniform(0.3, 1.0, size=(n, latent)))
    surgery = evaluation.elbo_surgery(q, standard_normal(latent), 400, tf.constant([1, 2]))
    closed_form = float(tf.reduce_mean(tfd.kl_divergence(q, standard_normal(latent))))
    assert surgery["kl_term"] == pytest.approx(closed_form, abs=0.05)
    assert 0 < surgery["mutual_information"] <= np.log(n) and surgery["kl_aggregate_posterior_prior"] > 0


def test_elbo_surgery_identity_holds_on_a_trained_model(trained, digits):
    """The trained tiny VAE's posteriors over the test images: I + KL(q(z) || p(z)), estimated
    with 64 draws per image, equals the closed-form mean KL term within 2 %."""
    model, _ = trained
    q = model.proposal(tf.constant(digits.test), tf.constant([0, 0]), 20, 2.0)  # a Gaussian q is its own proposal
    prior = model.prior_distribution()
    surgery = evaluation.elbo_surgery(q, prior, 64, tf.constant([7, 8]))
    closed_form = float(tf.reduce_mean(tfd.kl_divergence(q, prior)))
    assert surgery["mutual_information"] + surgery["kl_aggregate_posterior_prior"] == pytest.approx(closed_form, rel=0.02)
    assert 0 < surgery["mutual_information"] <= np.log(len(digits.test))


def test_elbo_surgery_known_answers():
    """Every q(z|x_n) the prior (posterior collapse): no information, no hole. Codes far apart
    and sharp: each tells its example, I = log N."""
    collapsed = batch_of_gaussians(np.zeros((8, 2)), np.ones((8, 2)))
    surgery = evaluation.elbo_surgery(collapsed, standard_normal(2), 50, tf.constant([3, 4]))
    assert surgery["mutual_information"] == pytest.approx(0.0, abs=1e-5)
    assert surgery["kl_aggregate_posterior_prior"] == pytest.approx(0.0, abs=1e-5)
    separate = batch_of_gaussians(10.0 * np.arange(8)[:, None] * np.ones((8, 2)), 0.01 * np.ones((8, 2)))
    surgery = evaluation.elbo_surgery(separate, standard_normal(2), 50, tf.constant([5, 6]), chunk_size=64)
    assert surgery["mutual_information"] == pytest.approx(np.log(8), abs=1e-4)


def test_elbo_surgery_numbers_do_not_depend_on_its_blocks(rng):
    """The aggregate posterior is taken in blocks of draws, each against every example: any block
    size gives the same figures to the last bit (each draw's log-sum-exp runs over all N at once)."""
    q = batch_of_gaussians(rng.normal(size=(30, 4)), rng.uniform(0.3, 1.0, size=(30, 4)))
    prior = tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros(5)), batch_of_gaussians(rng.normal(size=(5, 4)),
                                                                                         np.ones((5, 4))))
    whole, blocks = (evaluation.elbo_surgery(q, prior, 8, tf.constant([1, 2]), chunk_size=size) for size in (None, 7))
    assert whole == blocks


SURGERY_PEAK = """
import resource, sys
import numpy as np, tensorflow as tf
from vae_tf import evaluation
from vae_tf.tfp import tfd
n, components, latent = int(sys.argv[1]), int(sys.argv[2]), 8
rng = np.random.default_rng(0)
gaussians = lambda rows: tfd.Independent(tfd.Normal(rng.normal(size=(rows, latent)).astype(np.float32), 1.0), 1)
prior = tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros(components)), gaussians(components))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
evaluation.elbo_surgery(gaussians(n), prior, 16, tf.constant([1, 2]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.slow
def test_elbo_surgery_memory_does_not_grow_with_examples_or_prior_components():
    """Peak memory of the surgery, each size in a process of its own: 8x the examples and 8x a
    mixture prior's components add less than 150 MiB (measured: under 10 MiB; before the surgery
    took its blocks, they added 1.9 and 1.7 GiB: q's [512, N, L] and the prior's [S N, C, L])."""
    def peak(n, components):
        out = subprocess.run([sys.executable, "-c", SURGERY_PEAK, str(n), str(components)], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).parents[1])
        return float(out.stdout.split()[-1])

    small, more_examples, more_components = peak(500, 500), peak(4000, 500), peak(500, 4000)
    assert more_examples - small < 150 and more_components - small < 150, (small, more_examples, more_components)
