import keras
import numpy as np
import tensorflow as tf

from vae_tf.likelihoods import PixelCategorical
from vae_tf.objectives import ELBO
from vae_tf.objectives.base import replica_loss, weighted_means
from vae_tf.tfp import tfd
from vae_tf.training import minibatches

from vae_tf.data import Meta

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


def test_parts_are_passed_in_and_the_model_round_trips_through_keras_files(tmp_path, rng):
    model = model_of({"seed": 3, "model": {"latent_dim": 2, "hidden_units": [8]}}, meta_for(4, "levels", n_levels=5))
    assert isinstance(model.objective, ELBO) and model.posterior.role == "inference"
    x = rng.integers(0, 5, size=(6, 4)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_config() == model.get_config()
    assert loaded.get_config()["posterior"]["config"]["hidden_units"] == [8]  # the parts, serialized nested
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    h = model.likelihood.network_input(x)
    np.testing.assert_allclose(loaded.posterior.distribution(h).stddev(), model.posterior.distribution(h).stddev(),
                               rtol=1e-6)


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


def test_padding_rows_do_not_change_the_loss_or_metrics():
    objective = ELBO(kl_weight=0.5)
    reconstruction = tf.constant([-3.0, -5.0, -7.0, 123.0, 456.0])
    kl = tf.constant([1.0, 2.0, 3.0, 99.0, 99.0])
    weights = tf.constant([1.0, 1, 1, 0, 0])
    terms = objective.terms({"reconstruction": reconstruction, "kl": kl})
    loss = replica_loss(terms.pop("objective"), weights)
    means, total = weighted_means(terms, weights)
    assert total.numpy() == 3.0
    np.testing.assert_allclose(loss, -np.mean([-3 - 0.5, -5 - 1.0, -7 - 1.5]), rtol=1e-6)
    np.testing.assert_allclose(means["elbo"], np.mean([-4.0, -7.0, -10.0]), rtol=1e-6)
    np.testing.assert_allclose(means["kl"], 2.0, rtol=1e-6)


def test_dynamic_binarization_draws_bernoulli_pixels_of_the_intensities(rng):
    meta = meta_for(50, "binary", n_levels=2)
    model = model_of({"model": {"latent_dim": 2, "hidden_units": [8], "likelihood": "bernoulli"}},
                     Meta(**{**meta.__dict__, "dynamic_binarization": True}))
    intensities = np.tile(np.linspace(0.0, 1.0, 50, dtype=np.float32), (4000, 1))
    draws = model.binarize(tf.constant(intensities)).numpy()
    assert set(np.unique(draws)) == {0.0, 1.0}
    np.testing.assert_allclose(draws.mean(0), intensities[0], atol=4 * 0.5 / np.sqrt(4000))
    assert draws[:, 0].max() == 0.0 and draws[:, -1].min() == 1.0  # intensity 0 and 1 are kept
    assert not np.array_equal(draws, model.binarize(tf.constant(intensities)).numpy())  # fresh draws each step
    history = model.fit(intensities[:256], batch_size=64, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
