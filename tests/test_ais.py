"""Annealed importance sampling (vae_tf.ais): the exact log-likelihood of a linear Gaussian, the
schedule, and agreement with importance sampling on a trained VAE."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.ais import ais_log_likelihood, sigmoid_schedule
from vae_tf.evaluation import importance_sampling
from vae_tf.priors.standard_normal import standard_normal

from tests.conftest import LinearGaussian


def test_ais_recovers_the_exact_log_likelihood_of_a_linear_gaussian(rng):
    model = LinearGaussian(rng)
    x = (rng.normal(size=(20, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(20, 6))).astype(np.float32)
    run = tf.function(lambda x: ais_log_likelihood(x, model.likelihood, standard_normal(2), num_chains=64,
                                                   num_steps=2000, leapfrog_steps=1, step_size=0.1,
                                                   seed=tf.constant([1, 2])), jit_compile=True)
    estimate = run(tf.constant(x))
    error = estimate["log_likelihood"].numpy() - model.exact_log_likelihood(x)
    assert np.max(np.abs(error)) < 0.1
    assert 0.5 < np.mean(estimate["acceptance"]) < 0.9  # the step size was adapted towards 0.65


def test_sigmoid_schedule_runs_from_zero_to_one_in_increasing_steps():
    betas = sigmoid_schedule(100).numpy()
    assert betas[0] == 0.0 and betas[-1] == pytest.approx(1.0) and np.all(np.diff(betas) > 0)
    assert np.diff(betas)[0] < np.diff(betas)[50] > np.diff(betas)[-1]  # finer at both ends


@pytest.mark.slow
def test_ais_and_importance_sampling_agree_on_a_trained_gaussian_vae(trained, digits):
    """Both estimate the same log p(x) for the same images, so their per-image difference is
    estimator noise (and the bias of each, both lower bounds): its mean must be within three
    standard errors of zero. Measured: AIS -164.707, IS -164.748 (K=5000 gave -164.81: on this
    barely trained model q is a poor proposal, hence K=50000), difference 0.041 +- 0.019."""
    model, _ = trained
    x = tf.constant(digits.test[:128])

    @tf.function(jit_compile=True)
    def both(x):
        prior, likelihood = model.prior_distribution(), model.likelihood.distribution
        ais = ais_log_likelihood(x, likelihood, prior, 16, 1000, 1, 0.1, tf.constant([3, 4]))
        is_ = importance_sampling(x, lambda x: model.proposal(x, None, 0, 1.0).distribution, likelihood, prior, 50000, 1000,
                                  tf.constant([5, 6]))
        return ais["log_likelihood"], is_["log_likelihood"]

    ais, is_ = (value.numpy() for value in both(x))
    difference = ais - is_
    stderr = np.std(difference, ddof=1) / np.sqrt(len(difference))
    assert abs(np.mean(difference)) < 3 * stderr + 0.02, (np.mean(difference), stderr)
    assert np.all(np.isfinite(ais)) and np.mean(ais) < 0
