"""Semi-amortized refinement at evaluation time: gradient steps on each image's ELBO raise the
ELBO of every test image of a trained model, and tighten the importance-sampling estimate."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Params
from vae_tf.evaluation import evaluate_model, importance_sampling
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.refinement import refine
from vae_tf.tfp import Normal, tfd

from tests.conftest import TINY, LinearGaussian


def test_refinement_raises_the_elbo_of_every_test_image(trained, digits):
    model, _ = trained
    x = tf.constant(digits.test)
    q = model.proposal(x, tf.constant([0, 0]), 20, 2.0).distribution
    prior, likelihood = model.prior_distribution(), model.likelihood.distribution
    refined = refine(q, x, likelihood, prior, tf.constant([1, 2]), steps=20, step_size=0.05, num_draws=8,
                     max_gradient_norm=5.0)

    def elbo(proposal):  # 2000 draws per image, the same noise for both proposals
        return importance_sampling(x, lambda _: proposal, likelihood, prior, 2000, 500, tf.constant([3, 4]))["elbo"]

    before, after = elbo(q).numpy(), elbo(refined).numpy()
    assert np.all(after > before), np.sort(after - before)[:5]
    print(f"ELBO gain per image: mean {np.mean(after - before):.2f}, min {np.min(after - before):.3f} nats")


def test_evaluation_with_refinement_names_it_and_raises_the_elbo(trained, digits):
    """(A posterior without a Gaussian proposal is refused when params are read: test_config.)"""
    model, _ = trained
    params = Params.model_validate({**TINY, "evaluation": {**TINY["evaluation"], "ais": None,
                                                           "refinement": {"steps": 5}}}).evaluation
    metrics = evaluate_model(model, digits.test[:64], params, seed=0)["metrics"]
    plain = evaluate_model(model, digits.test[:64], params.model_copy(update={"refinement": None}), seed=0)["metrics"]
    assert "refined by 5 gradient steps" in metrics["estimator"] and metrics["elbo"] > plain["elbo"]


def refined_elbo(loc, truth, x, gradient, steps=3):
    """The ELBO of the refined q (fixed noise: a deterministic function of loc), summed over
    examples, and the refined q."""
    q = tfd.Independent(tfd.Normal(loc, 0.5 * tf.ones_like(loc)), 1)
    refined = refine(q, x, truth.likelihood, standard_normal(truth.latent), tf.constant([1, 2]), steps=steps,
                     step_size=0.05, num_draws=4, max_gradient_norm=1e6, gradient=gradient)
    estimate = importance_sampling(x, lambda _: refined, truth.likelihood, standard_normal(truth.latent), 16, 16,
                                   tf.constant([3, 4]))["elbo"]
    return tf.reduce_sum(estimate), refined


def test_refinement_gradients_through_the_steps_are_the_derivative_of_the_refined_elbo(rng):
    """through_steps: the autodiff gradient wrt the encoder's mean equals central finite
    differences of the refined ELBO; straight_through: the gradient at the refined mean, taken as
    the encoder's (the steps' Jacobian replaced by the identity), which differs; stopped: none."""
    truth = LinearGaussian(rng)
    x = tf.constant((rng.normal(size=(3, 2)) @ truth.w.T + truth.b).astype(np.float32))
    start = truth.posterior_mean(x.numpy()) + 0.5
    loc = tf.Variable(start)
    gradients = {}
    for gradient in ("through_steps", "straight_through", "stopped"):
        with tf.GradientTape() as tape:
            value, refined = refined_elbo(loc, truth, x, gradient)
        gradients[gradient] = tape.gradient(value, loc)
    assert gradients["stopped"] is None
    eps = 1e-2
    for i, j in [(0, 0), (1, 1), (2, 0)]:
        shift = np.zeros_like(start)
        shift[i, j] = eps
        plus, minus = (float(refined_elbo(tf.constant(start + s), truth, x, "through_steps")[0]) for s in (shift, -shift))
        assert gradients["through_steps"][i, j].numpy() == pytest.approx((plus - minus) / (2 * eps), rel=1e-3, abs=1e-3)
    loc_k, scale_k = tf.Variable(refined.distribution.loc), refined.distribution.scale
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(importance_sampling(x, lambda _: tfd.Independent(Normal(loc_k, scale_k), 1),
                                                  truth.likelihood, standard_normal(truth.latent), 16, 16,
                                                  tf.constant([3, 4]))["elbo"])
    np.testing.assert_allclose(gradients["straight_through"], tape.gradient(value, loc_k), rtol=1e-5)
    differ = np.abs(gradients["through_steps"].numpy() - gradients["straight_through"].numpy()).max()
    assert differ > 0.1, differ


@pytest.mark.parametrize("gradient", ["through_steps", "straight_through"])
def test_a_semi_amortized_vae_trains_and_is_evaluated_with_its_refinement(digits, tmp_path, monkeypatch, gradient):
    from vae_tf.training import train
    import keras

    monkeypatch.chdir(tmp_path)
    objective = {"kind": "elbo", "refinement": {"steps": 2, "gradient": gradient}}
    params = Params.model_validate({**TINY, "objective": objective})
    assert params.objective.describe() == f"elbo K=1 (reparameterized, q refined by 2 steps ({gradient}))"
    history = train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup").history
    assert history["val_bound"][-1] > history["val_bound"][0], history["val_bound"]
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.objective.refinement["gradient"] == gradient
    metrics = evaluate_model(model, digits.test[:64], params.evaluation.model_copy(update={"ais": None}), 0)["metrics"]
    assert "refined by 2 gradient steps" in metrics["estimator"]
    planar = {**TINY, "model": {**TINY["model"], "posterior": "planar"}, "objective": objective}
    with pytest.raises(ValueError, match="objective.refinement: .* 'planar' posterior"):  # pydantic's
        Params.model_validate(planar)
