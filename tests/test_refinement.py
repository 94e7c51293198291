"""Semi-amortized refinement at evaluation time: gradient steps on each image's ELBO raise the
ELBO of every test image of a trained model, and tighten the importance-sampling estimate."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Params
from vae_tf.errors import ParamsError
from vae_tf.evaluation import evaluate_model, importance_sampling
from vae_tf.refinement import refine

from tests.conftest import TINY, TINY_AVB, model_of


def test_refinement_raises_the_elbo_of_every_test_image(trained, digits):
    model, _ = trained
    x = tf.constant(digits.test)
    q = model.proposal(x, tf.constant([0, 0]), 20, 2.0)
    prior, likelihood = model.prior_distribution(), model.likelihood.distribution
    refined = refine(q, x, likelihood, prior, steps=20, step_size=0.05, num_draws=8, max_gradient_norm=5.0,
                     seed=tf.constant([1, 2]))

    def elbo(proposal):  # 2000 draws per image, the same noise for both proposals
        return importance_sampling(x, lambda _: proposal, likelihood, prior, 2000, 500, tf.constant([3, 4]))["elbo"]

    before, after = elbo(q).numpy(), elbo(refined).numpy()
    assert np.all(after > before), np.sort(after - before)[:5]
    print(f"ELBO gain per image: mean {np.mean(after - before):.2f}, min {np.min(after - before):.3f} nats")


def test_evaluation_with_refinement_names_it_and_refuses_a_posterior_without_a_gaussian_proposal(trained, digits):
    model, _ = trained
    params = Params.model_validate({**TINY, "evaluation": {**TINY["evaluation"], "ais": None,
                                                           "refinement": {"steps": 5}}}).evaluation
    metrics = evaluate_model(model, digits.test[:64], params, seed=0)["metrics"]
    plain = evaluate_model(model, digits.test[:64], params.model_copy(update={"refinement": None}), seed=0)["metrics"]
    assert "refined by 5 gradient steps" in metrics["estimator"] and metrics["elbo"] > plain["elbo"]
    avb = model_of(TINY_AVB, digits.meta)
    with pytest.raises(ParamsError, match="evaluation.refinement: .* 'implicit' posterior"):
        evaluate_model(avb, digits.test[:64], params, seed=0)
