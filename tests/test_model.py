"""The composed model (vae_tf.models): parts passed in and round-tripped, minibatches and their
padding, dynamic binarization (the likelihoods themselves: test_likelihoods.py)."""

import keras
import numpy as np
import tensorflow as tf

from vae_tf.objectives.params import ELBOParams
from vae_tf.objectives import ELBO
from vae_tf.objectives.base import replica_loss, weighted_means
from vae_tf.training import minibatches

from vae_tf.data import Meta

from tests.conftest import meta_for, model_of


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
    objective = ELBO(**ELBOParams(kl_weight=0.5).settings())
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
