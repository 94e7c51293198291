"""The likelihoods p(x|z) (vae_tf.likelihoods): their densities against closed forms and TFP's, and
the decoder over importance samples."""

import numpy as np
import tensorflow as tf

from vae_tf.likelihoods import PixelCategorical
from vae_tf.tfp import tfd

from tests.conftest import meta_for, model_of


def test_categorical_likelihood_is_the_sum_of_log_softmax_at_the_observed_levels(rng):
    model = model_of({"model": {"latent_dim": 2, "hidden_units": [8]}}, meta_for(3, "levels", n_levels=4))
    likelihood = model.likelihood
    raw = rng.normal(size=(2, 4 * 3)).astype(np.float32)  # level-major: 4 levels x 3 pixels
    x = np.array([[0, 3, 1], [2, 2, 0]], np.float32)
    logits = raw.reshape(2, 4, 3).transpose(0, 2, 1)  # [batch, pixel, level]
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, x.astype(int)[..., None], -1).sum((1, 2))
    np.testing.assert_allclose(likelihood.distribution_of(raw).log_prob(x), expected, rtol=1e-5)
    np.testing.assert_allclose(likelihood.distribution_of(raw).mean(), (np.exp(log_softmax) * np.arange(4)).sum(-1),
                               rtol=1e-5)
    np.testing.assert_allclose(likelihood.parameters_of(tf.constant(raw))["logits"], logits)
    np.testing.assert_allclose(likelihood.network_input(x), x / 3)  # grey levels as intensities


def test_pixel_categorical_matches_tfp_categorical(rng):
    logits = tf.constant(rng.normal(size=(5, 2, 4, 3)), tf.float32)  # [K, batch, L, D]
    ours = PixelCategorical(logits)
    reference = tfd.Independent(tfd.Categorical(logits=tf.linalg.matrix_transpose(logits), dtype=tf.float32), 1)
    assert ours.batch_shape == reference.batch_shape == (5, 2) and ours.event_shape == reference.event_shape == (3,)
    x = tf.constant(rng.integers(0, 4, size=(2, 3)), tf.float32)  # broadcast against the K samples
    np.testing.assert_allclose(ours.log_prob(x), reference.log_prob(x), rtol=1e-5)
    np.testing.assert_allclose(ours.mean(), tf.reduce_sum(tf.nn.softmax(reference.distribution.logits) * tf.range(4.0), -1),
                               rtol=1e-5)
    draws = PixelCategorical(logits[0, 0]).sample(40_000, seed=[1, 2]).numpy()  # [n, D]
    frequencies = np.stack([(draws == level).mean(0) for level in range(4)])  # [L, D]
    np.testing.assert_allclose(frequencies, tf.nn.softmax(logits[0, 0], axis=0), atol=0.01)


def test_bernoulli_and_gaussian_likelihoods(rng):
    bernoulli = model_of({"model": {"hidden_units": [8], "likelihood": "bernoulli"}},
                         meta_for(3, "binary", n_levels=2)).likelihood
    raw = rng.normal(size=(2, 3)).astype(np.float32)
    x = np.array([[0, 1, 1], [1, 0, 0]], np.float32)
    p = 1 / (1 + np.exp(-raw))
    np.testing.assert_allclose(bernoulli.distribution_of(raw).log_prob(x),
                               np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), -1), rtol=1e-5)
    gaussian = model_of({"model": {"hidden_units": [8], "likelihood": "gaussian"}}, meta_for(3)).likelihood
    params = gaussian.parameters_of(tf.constant(rng.normal(size=(2, 6)), tf.float32))
    assert np.all(params["scale"].numpy() > 0) and params["loc"].shape == (2, 3)


def test_decoder_accepts_importance_samples_in_front_of_the_batch(rng):
    model = model_of({"model": {"latent_dim": 2, "hidden_units": [8], "likelihood": "bernoulli"}},
                     meta_for(5, "binary", n_levels=2))
    z = tf.constant(rng.normal(size=(7, 3, 2)), tf.float32)
    p = model.likelihood.distribution(z)
    assert p.batch_shape == (7, 3) and p.event_shape == (5,)
    one = model.likelihood.distribution(z[2])  # the same latents one at a time
    np.testing.assert_allclose(p.mean()[2], one.mean(), rtol=1e-6)
