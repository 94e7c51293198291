import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import EvaluationParams
from vae_tf.evaluation import evaluate_model
from vae_tf.export import export_model

from tests.conftest import TINY_AVB, model_of


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, _ = trained
    path = tmp_path_factory.mktemp("export") / "1"
    export_model(model, path, chunk_size=64, proposal_samples=100, proposal_scale=2.0)
    return model, tf.saved_model.load(str(path))


def test_every_signature_reloads_and_agrees_with_the_model(exported, digits):
    model, loaded = exported
    assert set(loaded.signatures) == {"encode", "decode", "sample", "reconstruct", "log_likelihood", "serving_default"}
    x = tf.constant(digits.test[:5])
    encoded = loaded.signatures["encode"](x=x)
    q = model.posterior.distribution(model.likelihood.network_input(x))
    np.testing.assert_allclose(encoded["mean"], q.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encoded["scale"], q.stddev(), rtol=1e-5, atol=1e-6)
    decoded = loaded.signatures["decode"](z=encoded["mean"])
    assert decoded["logits"].shape == (5, 64, 17)
    np.testing.assert_allclose(loaded.signatures["reconstruct"](x=x)["mean"], model(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(decoded["mean"], model(x), rtol=1e-5, atol=1e-5)
    samples = loaded.signatures["sample"](num_samples=tf.constant(6), seed=tf.constant(1))
    assert samples["x"].shape == (6, 64) and set(np.unique(samples["x"])) <= set(range(17))
    again = loaded.signatures["sample"](num_samples=tf.constant(6), seed=tf.constant(1))
    np.testing.assert_array_equal(samples["x"], again["x"])  # seeded


def test_exported_log_likelihood_agrees_with_evaluation_within_monte_carlo_error(exported, digits):
    model, loaded = exported
    x = digits.test[:100]
    k = 500
    settings = EvaluationParams(num_samples=k, chunk_size=100, batch_size=50, ais=None)
    evaluated = evaluate_model(model, x, settings, seed=0)["log_likelihood"]
    served = [loaded.signatures["log_likelihood"](x=tf.constant(x), num_samples=tf.constant(k), seed=tf.constant(s))
              ["log_likelihood"].numpy() for s in (1, 2)]
    # Monte Carlo error of the mean estimate, from two independent exported runs
    mc_stderr = np.std(served[0] - served[1], ddof=1) / np.sqrt(2 * len(x))
    assert abs(np.mean(served[0]) - np.mean(evaluated)) < 4 * mc_stderr + 1e-3
    assert served[0].shape == (100,) and not np.array_equal(served[0], served[1])


def test_exported_signatures_reject_data_the_likelihood_is_not_a_density_for(exported, digits):
    _, loaded = exported
    for bad in (17.0, -1.0, 2.5, np.nan):
        x = np.array(digits.test[:2])
        x[1, 5] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"x: values must be grey levels, integers in \[0, 16\]"):
            loaded.signatures["encode"](x=tf.constant(x))


@pytest.fixture(scope="module")
def exported_avb(digits, tmp_path_factory):
    """A tiny AVB, trained for two epochs, and its reloaded SavedModel."""
    params = {**TINY_AVB, "model": {**TINY_AVB["model"], "posterior": {"kind": "implicit", "noise_dim": 2,
                                                                      "moment_samples": 50}},
              "training": {"optimizer": "adam"}}
    model = model_of(params, digits.meta)
    model.fit(digits.train, batch_size=64, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("export") / "1"
    export_model(model, path, chunk_size=64, proposal_samples=100, proposal_scale=1.5)
    return model, tf.saved_model.load(str(path))


def test_avb_export_has_the_same_signatures_and_encode_returns_samples_with_their_moments(exported_avb, exported,
                                                                                          digits):
    model, loaded = exported_avb
    assert set(loaded.signatures) == set(exported[1].signatures)
    x = tf.constant(digits.test[:5])
    encoded = loaded.signatures["encode"](x=x)
    samples = encoded["samples"].numpy()
    assert samples.shape == (5, 50, 2)  # [batch, moment_samples, L]
    np.testing.assert_allclose(encoded["mean"], samples.mean(axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(encoded["scale"], samples.std(axis=1, ddof=1) + 1e-5, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(samples, loaded.signatures["encode"](x=x)["samples"])  # same x, same answer
    np.testing.assert_allclose(loaded.signatures["reconstruct"](x=x)["mean"], model(x), rtol=1e-4, atol=1e-5)


def test_avb_exported_log_likelihood_is_the_fitted_proposal_estimate_of_evaluation(exported_avb, digits):
    model, loaded = exported_avb
    x = digits.test[:100]
    settings = EvaluationParams(num_samples=500, chunk_size=100, batch_size=50, proposal_samples=100,
                                proposal_scale=1.5, ais=None)
    evaluated = evaluate_model(model, x, settings, seed=0)
    assert evaluated["metrics"]["estimator"] == (
        "importance sampling, Gaussian fitted to 100 draws of q(z|x), scale x1.5 proposal, K=500")
    served = [loaded.signatures["log_likelihood"](x=tf.constant(x), num_samples=tf.constant(500), seed=tf.constant(s))
              ["log_likelihood"].numpy() for s in (1, 2)]
    mc_stderr = np.std(served[0] - served[1], ddof=1) / np.sqrt(2 * len(x))
    assert abs(np.mean(served[0]) - np.mean(evaluated["log_likelihood"])) < 4 * mc_stderr + 1e-3
    assert evaluated["metrics"]["elbo"] < -evaluated["metrics"]["nll"]
