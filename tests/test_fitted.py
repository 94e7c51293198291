"""Gaussians fitted to draws (vae_tf.posteriors.fitted): their moments and density, and importance
sampling with one fitted to exact posterior draws."""

import numpy as np
import tensorflow as tf

from vae_tf.evaluation import importance_sampling
from vae_tf.posteriors import fitted_gaussian, sample_moments
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

from tests.conftest import LinearGaussian


def test_fitted_gaussian_matches_the_moments_and_density_of_its_samples():
    loc, tril = np.array([1.0, -2.0], np.float32), np.array([[0.5, 0.0], [0.3, 0.2]], np.float32)
    target = tfd.MultivariateNormalTriL(loc, tril)
    z = target.sample([50000, 3], seed=[1, 1])  # [n, batch 3, L 2]
    fitted = fitted_gaussian(z)
    assert fitted.batch_shape == [3] and fitted.event_shape == [2]
    np.testing.assert_allclose(fitted.mean(), np.broadcast_to(loc, (3, 2)), atol=0.02)
    points = tf.constant([[1.4, -1.8], [1.0, -2.0], [0.5, -2.2]])  # within two standard deviations
    np.testing.assert_allclose(fitted.log_prob(points), target.log_prob(points), atol=0.02)
    draws = fitted.sample(40000, seed=[2, 2]).numpy()  # [n, 3, 2]
    for b in range(3):
        np.testing.assert_allclose(np.cov(draws[:, b].T), tril @ tril.T, atol=0.01)
    widened = fitted_gaussian(z, scale=2.0).sample(40000, seed=[3, 3]).numpy()
    np.testing.assert_allclose(np.cov(widened[:, 0].T), 4.0 * tril @ tril.T, atol=0.04)
    mean, scale = sample_moments(z)
    np.testing.assert_allclose(scale, np.broadcast_to(np.sqrt(np.diag(tril @ tril.T)), (3, 2)), atol=0.01)


def test_importance_sampling_with_a_gaussian_fitted_to_exact_posterior_draws_is_exact(rng):
    """A sampler of the exact posterior stands in for an implicit q: the Gaussian fitted to its
    draws is (nearly) p(z|x) itself, so the weights are nearly constant and the estimate exact."""
    model = LinearGaussian(rng)
    x = (rng.normal(size=(10, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(10, 6))).astype(np.float32)
    draws = model.exact_posterior(x).sample(2000, seed=[3, 3])
    estimate = importance_sampling(x, lambda _: fitted_gaussian(draws), model.likelihood, standard_normal(2), 1000,
                                   250, tf.constant([4, 4]))
    np.testing.assert_allclose(estimate["log_likelihood"], model.exact_log_likelihood(x), atol=0.02)
    assert np.all(estimate["elbo"].numpy() <= estimate["log_likelihood"].numpy() + 1e-4)
