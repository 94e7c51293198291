import numpy as np
import pytest
import tensorflow as tf

from vae_tf.evaluation import evaluate_model
from vae_tf.export import export_model


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, _ = trained
    path = tmp_path_factory.mktemp("export") / "1"
    export_model(model, path, chunk_size=64)
    return model, tf.saved_model.load(str(path))


def test_every_signature_reloads_and_agrees_with_the_model(exported, digits):
    model, loaded = exported
    assert set(loaded.signatures) == {"encode", "decode", "sample", "reconstruct", "log_likelihood", "serving_default"}
    x = tf.constant(digits.test[:5])
    encoded = loaded.signatures["encode"](x=x)
    q = model.posterior(x)
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
    evaluated = evaluate_model(model, x, k, 100, 50, seed=0, active_threshold=0.01)["log_likelihood"]
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
