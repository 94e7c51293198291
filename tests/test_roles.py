"""Variables carry a role, and every variable gets the gradient its estimator promises, with a
learnable posterior and a learnable prior (the example kinds of `example_parts.py`): the
learnt prior's variables are generative, the shared posterior scale is inference."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.objectives.bounds import elbo, normalized_weights

from tests.conftest import meta_for, model_of, reseed

LEARNABLE = {"latent_dim": 2, "hidden_units": [8], "likelihood": "gaussian", "posterior": "shared_scale",
             "prior": "learned_gaussian"}


def learnable_model(objective):
    params = {"model": LEARNABLE, "objective": objective, "training": {"optimizer": "sgd", "learning_rate": 1.0}}
    model = model_of(params, meta_for(3))
    # move the prior away from N(0, I) so that its gradients are not special
    model.prior.loc.assign([0.5, -1.0])
    model.prior.log_scale.assign([0.2, -0.3])
    return model


def applied_gradients(model, x, seed):
    """Minus the step one update (SGD, learning rate 1) took, per variable path (the update is
    applied: take reference gradients first)."""
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    reseed(model, seed)
    model.objective.update(model, x, tf.ones([x.shape[0]]))
    return {v.path: before[v.path] - v.numpy() for v in model.trainable_variables}


def reference_gradients(model, x, seed, surrogate):
    """The gradient of `surrogate(draws)` (a scalar) for every variable, on the update's draws."""
    reseed(model, seed)
    with tf.GradientTape() as tape:
        value = surrogate(model.draws(x, model.num_samples, stop_density_gradient=True))
    variables = model.trainable_variables
    return {v.path: g.numpy() for v, g in zip(variables, tape.gradient(value, variables))}


@pytest.fixture
def x(rng):
    return tf.constant(rng.normal(size=(6, 3)), tf.float32)


def test_each_part_has_its_role_and_every_variable_one(x):
    model = learnable_model({"kind": "elbo"})
    roles = {role: {v.path for v in model.variables_by_role(role)} for role in ("inference", "generative", "adversary")}
    assert {v.path for v in model.posterior.trainable_variables} == roles["inference"]
    assert {v.path for v in [*model.likelihood.trainable_variables, model.prior.loc, model.prior.log_scale]} \
        == roles["generative"]
    assert roles["adversary"] == set() and model.adversary_optimizer is None
    assert sum(map(len, roles.values())) == len(model.trainable_variables)
    assert any("raw_scale" in path for path in roles["inference"])


def test_elbo_gives_the_prior_the_closed_form_gradient_of_the_kl(x):
    """For Gaussian q and p the ELBO's KL is analytic; minus the ELBO's gradient for the prior's mean
    is d KL / d m = mean over examples of (m - mu_q(x)) / s^2, whatever the draws."""
    model = learnable_model({"kind": "elbo"})
    q = model.posterior.distribution(x)
    mu_q = q.distribution.loc.numpy()
    s2 = np.exp(2 * model.prior.log_scale.numpy())
    expected = np.mean((model.prior.loc.numpy() - mu_q) / s2, axis=0)
    reference = reference_gradients(model, x, 1, lambda d: -tf.reduce_mean(elbo(d["reconstruction"], d["kl"])))
    gradients = applied_gradients(model, x, 1)
    np.testing.assert_allclose(gradients[model.prior.loc.path], expected, rtol=1e-4)
    for path, gradient in gradients.items():
        assert np.any(gradient != 0), path
        np.testing.assert_allclose(gradient, reference[path], rtol=1e-4, atol=1e-6, err_msg=path)


def test_dreg_gives_generative_variables_the_iwae_gradient_and_inference_ones_the_doubly_reparameterized(x):
    """Generative (decoder and prior): sum_k w~_k d log w_k / d theta, the gradient of L_K.
    Inference (the encoder's network and the shared scale): sum_k w~_k^2 d log w_k / d z_k dz_k/dphi,
    here computed in one pass from the surrogate sum_k stop(w~_k^2) log w_k with q's density held
    fixed, independently of the objective's two-pass implementation."""
    model = learnable_model({"kind": "iwae", "num_samples": 5, "gradient": "dreg"})

    def iwae(draws):
        log_w = draws["log_weights"]
        return -tf.reduce_mean(tf.reduce_logsumexp(log_w, axis=0))

    def doubly_reparameterized(draws):
        log_w = draws["log_weights"]
        return -tf.reduce_mean(tf.reduce_sum(tf.square(normalized_weights(log_w)) * log_w, axis=0))

    generative, inference = reference_gradients(model, x, 2, iwae), reference_gradients(model, x, 2, doubly_reparameterized)
    gradients = applied_gradients(model, x, 2)
    for v in model.variables_by_role("generative"):
        np.testing.assert_allclose(gradients[v.path], generative[v.path], rtol=1e-4, atol=1e-6, err_msg=v.path)
    for v in model.variables_by_role("inference"):
        np.testing.assert_allclose(gradients[v.path], inference[v.path], rtol=1e-4, atol=1e-6, err_msg=v.path)
        assert np.any(gradients[v.path] != 0), v.path
    assert not np.allclose(inference[model.posterior.raw_scale.path], generative[model.posterior.raw_scale.path])


def test_avb_steps_move_their_own_players_with_a_learnable_prior_and_posterior(x):
    model = model_of({"model": LEARNABLE, "objective": {"kind": "avb", "discriminator_units": [8]}}, meta_for(3))
    objective, weights = model.objective, tf.ones([6])
    paths = {role: {v.path for v in model.variables_by_role(role)} for role in ("inference", "generative", "adversary")}
    reference = objective.reference(model, model.likelihood.network_input(x))

    def moved_by(step):
        before = {v.path: v.numpy().copy() for v in model.trainable_variables}
        step()
        return {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())}

    assert moved_by(lambda: objective.discriminator_step(model, x, weights, reference)) == paths["adversary"]
    assert moved_by(lambda: objective.model_step(model, x, weights, reference)) == paths["inference"] | paths["generative"]
