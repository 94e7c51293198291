import keras
import numpy as np
import tensorflow as tf

from vae_tf.likelihoods import Bernoulli, Categorical, Gaussian, PixelCategorical
from vae_tf.models import VAE
from vae_tf.tfp import tfd
from vae_tf.training import minibatches


def test_categorical_likelihood_is_the_sum_of_log_softmax_at_the_observed_levels(rng):
    raw = rng.normal(size=(2, 4 * 3)).astype(np.float32)  # level-major: 4 levels x 3 pixels
    x = np.array([[0, 3, 1], [2, 2, 0]], np.float32)
    logits = raw.reshape(2, 4, 3).transpose(0, 2, 1)  # [batch, pixel, level]
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, x.astype(int)[..., None], -1).sum((1, 2))
    likelihood = Categorical(3, 4)
    np.testing.assert_allclose(likelihood.distribution(raw).log_prob(x), expected, rtol=1e-5)
    np.testing.assert_allclose(likelihood.distribution(raw).mean(), (np.exp(log_softmax) * np.arange(4)).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(likelihood.parameters(tf.constant(raw))["logits"], logits)


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
    raw = rng.normal(size=(2, 3)).astype(np.float32)
    x = np.array([[0, 1, 1], [1, 0, 0]], np.float32)
    p = 1 / (1 + np.exp(-raw))
    np.testing.assert_allclose(Bernoulli(3).distribution(raw).log_prob(x),
                               np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), -1), rtol=1e-5)
    raw2 = rng.normal(size=(2, 6)).astype(np.float32)
    params = Gaussian(3).parameters(tf.constant(raw2))
    assert np.all(params["scale"].numpy() > 0) and params["loc"].shape == (2, 3)


def test_decoder_accepts_importance_samples_in_front_of_the_batch(rng):
    model = VAE(data_dim=5, latent_dim=2, hidden_units=[8], likelihood="bernoulli", n_levels=2)
    model.build((None, 5))
    z = tf.constant(rng.normal(size=(7, 3, 2)), tf.float32)
    p = model.likelihood(z)
    assert p.batch_shape == (7, 3) and p.event_shape == (5,)
    one = model.likelihood(z[2])  # the same latents one at a time
    np.testing.assert_allclose(p.mean()[2], one.mean(), rtol=1e-6)


def test_keras_save_and_load_round_trip(tmp_path, rng):
    model = VAE(data_dim=4, latent_dim=2, hidden_units=[8], likelihood="categorical", n_levels=5, seed=3)
    model.build((None, 4))
    model.compile(optimizer="adamax")
    x = rng.integers(0, 5, size=(6, 4)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    np.testing.assert_allclose(loaded.posterior(x).stddev(), model.posterior(x).stddev(), rtol=1e-6)


def test_minibatches_use_every_example_once_per_epoch_with_padding_weighted_zero():
    x = np.arange(10, dtype=np.float32).reshape(10, 1) + 1
    dataset, steps = minibatches(x, batch_size=4, fused_steps=2, seed=0)
    assert steps == 2  # 3 minibatches of 4 (the last padded with 2 rows), at most 2 per call
    elements = list(dataset.take(2 * steps).as_numpy_iterator())
    orders = []
    for epoch in (elements[:steps], elements[steps:]):
        xs = np.concatenate([xb.reshape(-1) for xb, _ in epoch])
        ws = np.concatenate([wb.reshape(-1) for _, wb in epoch])
        assert sorted(xs[ws > 0]) == list(range(1, 11)) and xs[ws == 0].tolist() == [0.0, 0.0]
        orders.append(xs[ws > 0])
    assert not np.array_equal(*orders)  # reshuffled every epoch


def test_padding_rows_do_not_change_the_loss_or_metrics(rng):
    model = VAE(data_dim=4, latent_dim=2, hidden_units=[8], likelihood="categorical", n_levels=5, kl_weight=0.5)
    model.build((None, 4))
    reconstruction = tf.constant([[-3.0, -5.0, -7.0, 123.0, 456.0]])
    kl = tf.constant([1.0, 2.0, 3.0, 99.0, 99.0])
    draws = {"log_px": reconstruction, "kl": kl, "log_weights": reconstruction - kl}
    loss, terms, total = model._terms(draws, tf.constant([1.0, 1, 1, 0, 0]))
    assert total.numpy() == 3.0
    np.testing.assert_allclose(loss, -np.mean([-3 - 0.5, -5 - 1.0, -7 - 1.5]), rtol=1e-6)
    np.testing.assert_allclose(terms["elbo"], np.mean([-4.0, -7.0, -10.0]), rtol=1e-6)
    np.testing.assert_allclose(terms["kl"], 2.0, rtol=1e-6)
