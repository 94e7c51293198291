"""The IWAE objective on real models: K = 1, monotonicity in K, DReG, numerical range."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.objectives import bounds
from vae_tf.evaluation import importance_sampling
from vae_tf.tfp import Normal, tfd

from tests.conftest import meta_for, model_of, reseed


def small_model(objective="iwae", num_samples=5, gradient="dreg", seed=0, learning_rate=1.0, beta=None,
                prior="standard_normal"):
    """A Gaussian-likelihood model on 6 dimensions; SGD with learning rate 1, so one update moves
    each variable by minus its gradient. `beta`: the KL warm-up's weight, held there."""
    params = {"seed": seed, "model": {"latent_dim": 2, "hidden_units": [8], "likelihood": "gaussian", "prior": prior},
              "objective": {"kind": objective, "num_samples": num_samples,
                            **({"gradient": gradient} if objective == "iwae" else {}),
                            **({"kl_warmup_epochs": 10} if beta is not None else {})},
              "training": {"optimizer": "sgd", "learning_rate": learning_rate, "jit_compile": False}}
    model = model_of(params, meta_for(6))
    if beta is not None:
        model.objective.beta.assign(beta)
    return model


def test_iwae_with_one_sample_is_the_elbo_estimator_on_the_same_draws(rng):
    model = small_model(num_samples=1)
    x = tf.constant(rng.normal(size=(5, 6)), tf.float32)
    reseed(model, 3)
    draws = model.draws(x, 1)
    z = draws["z"][0]
    q, p = model.posterior.distribution(x), model.prior_distribution()
    one_sample_elbo = model.likelihood.distribution(z).log_prob(x) - (q.log_prob(z) - p.log_prob(z))
    np.testing.assert_allclose(bounds.iwae_bound(draws["log_weights"]), one_sample_elbo, rtol=1e-5)
    np.testing.assert_allclose(model.objective.terms(draws)["objective"], one_sample_elbo, rtol=1e-5)
    # ...and on average over draws it is the ELBO with the analytic KL: each of 20000 draws'
    # log-weight is one one-sample estimate
    estimates = model.draws(x, 20000)["log_weights"].numpy()
    analytic = (tf.reduce_mean(model.likelihood.distribution(q.sample(20000, seed=[1, 1])).log_prob(x), 0)
                - tfd.kl_divergence(q, p)).numpy()
    stderr = np.std(estimates, axis=0) / np.sqrt(len(estimates))
    assert np.all(np.abs(np.mean(estimates, axis=0) - analytic) < 4 * stderr + 0.02)


def test_expected_bound_does_not_decrease_with_k_on_a_fixed_model(trained, digits):
    """E[L_K] is non-decreasing in K (Burda et al. 2016, theorem 1): means over 447 test images
    x 30 replicates, compared with their standard errors."""
    model, _ = trained
    x = tf.constant(digits.test)
    q = model.posterior.distribution(model.likelihood.network_input(x))
    estimates = {}
    for k in (1, 2, 5, 20, 100):
        values = np.stack([importance_sampling(x, lambda _: q, model.likelihood.distribution, model.prior_distribution(),
                                               k, min(k, 50), tf.constant([k, r]))["log_likelihood"].numpy()
                           for r in range(30)])
        estimates[k] = (values.mean(), values.mean(axis=0).std(ddof=1) / np.sqrt(len(x)))
    ks = list(estimates)
    for small, large in zip(ks, ks[1:]):
        (m1, s1), (m2, s2) = estimates[small], estimates[large]
        assert m2 - m1 > -3 * np.hypot(s1, s2), (small, large, estimates)
    assert estimates[100][0] - estimates[1][0] > 5 * np.hypot(estimates[1][1], estimates[100][1])


_compiled_updates = {}


def update_gradients(model, x, seed):
    """The gradient one update applied to each variable, by role (the model's SGD has learning
    rate 1: the step is minus the gradient). The weights are restored after."""
    if id(model) not in _compiled_updates:
        _compiled_updates[id(model)] = tf.function(lambda x, w: model.objective.update(model, x, w))
    before = [v.numpy().copy() for v in model.trainable_variables]
    reseed(model, seed)
    _compiled_updates[id(model)](x, tf.ones([x.shape[0]]))
    steps = {id(v): b - v.numpy() for v, b in zip(model.trainable_variables, before)}
    for v, b in zip(model.trainable_variables, before):
        v.assign(b)
    return {role: [steps[id(v)] for v in model.variables_by_role(role)] for role in ("inference", "generative")}


def test_dreg_leaves_the_generative_gradient_unchanged_and_changes_the_inference_one(rng):
    dreg, standard = small_model(num_samples=10), small_model(num_samples=10, gradient="reparameterized")
    x = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    g_dreg, g_std = update_gradients(dreg, x, 7), update_gradients(standard, x, 7)
    for a, b in zip(g_dreg["generative"], g_std["generative"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(g_dreg["inference"], g_std["inference"]))


@pytest.mark.slow
def test_dreg_inference_gradient_has_the_standard_expectation(rng):
    """Paired draws: the mean of (DReG - standard) inference gradients is zero within its standard
    error for every parameter (|z| < 4.5 over ~100 parameters), while the standard gradient's own
    mean is clearly non-zero (the check can see a difference of that size). (Lower variance is
    not asserted: on an untrained model it does not hold in general.)"""
    dreg, standard = small_model(num_samples=10), small_model(num_samples=10, gradient="reparameterized")
    x = tf.constant(rng.normal(size=(4, 6)) * 2, tf.float32)

    def flat(model, seed):
        return np.concatenate([g.reshape(-1) for g in update_gradients(model, x, seed)["inference"]])

    pairs = [(flat(dreg, s), flat(standard, s)) for s in range(3000)]
    dreg_g, std = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    n = len(pairs)
    diff = dreg_g - std
    z = diff.mean(0) / (diff.std(0, ddof=1) / np.sqrt(n) + 1e-12)
    assert np.max(np.abs(z)) < 4.5, np.sort(np.abs(z))[-5:]
    signal = np.abs(std.mean(0)) / (std.std(0, ddof=1) / np.sqrt(n))
    assert np.max(signal) > 10


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["standard_normal", {"kind": "vamp", "num_components": 3}])
def test_dreg_of_the_tempered_bound_has_its_reparameterized_expectation(rng, prior):
    """In the KL warm-up (beta = 0.3) the weights are tempered, log p(x|z) + beta (log p(z) -
    log q(z|x)), and DReG's path weights w~ ((1 - beta) + beta w~): paired draws, the mean of
    (DReG - reparameterized) inference gradients is zero within its standard error, also where
    p(z) is made of q (the VampPrior's explicit term)."""
    dreg, standard = (small_model(num_samples=10, gradient=gradient, beta=0.3, prior=prior)
                      for gradient in ("dreg", "reparameterized"))
    x = tf.constant(rng.normal(size=(4, 6)) * 2, tf.float32)

    def flat(model, seed):
        return np.concatenate([g.reshape(-1) for g in update_gradients(model, x, seed)["inference"]])

    pairs = [(flat(dreg, s), flat(standard, s)) for s in range(2000)]
    dreg_g, std = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    diff = dreg_g - std
    z = diff.mean(0) / (diff.std(0, ddof=1) / np.sqrt(len(pairs)) + 1e-12)
    assert np.max(np.abs(z)) < 4.5, np.sort(np.abs(z))[-5:]
    assert np.max(np.abs(std.mean(0)) / (std.std(0, ddof=1) / np.sqrt(len(pairs)))) > 10


def test_the_warm_up_tempers_the_objective_not_the_bound(rng):
    """With beta = 0.3 the objective is L_K of log p(x|z) + 0.3 (log p(z) - log q(z|x)); the bound
    early stopping watches stays L_K; without a warm-up the objective is L_K to the bit."""
    x = tf.constant(rng.normal(size=(5, 6)), tf.float32)
    for beta in (0.3, None):
        model = small_model(beta=beta)
        reseed(model, 3)
        draws = model.draws(x, 5)
        terms = model.objective.terms(draws)
        log_px, log_w = draws["log_px"].numpy(), draws["log_weights"].numpy()
        tempered = log_w if beta is None else log_px + beta * (log_w - log_px)
        np.testing.assert_array_equal(terms["bound"], bounds.iwae_bound(log_w))
        np.testing.assert_allclose(terms["objective"], bounds.iwae_bound(tempered), rtol=1e-6)
        if beta is None:
            np.testing.assert_array_equal(terms["objective"], terms["bound"])
            assert model.objective.weights == []  # as IWAE models saved before warm-ups existed: they load


@pytest.mark.parametrize("gradient", ["dreg", "reparameterized"])
def test_log_weights_below_minus_ten_thousand_beside_ordinary_ones_give_finite_updates(rng, gradient):
    """An example far from what the decoder gives (log-weights below -1e4) in the same batch as
    ordinary ones: the loss and every variable's step stay finite and non-zero (the bound itself
    at +-1e4: `test_iwae_bound_is_the_log_mean_weight_and_finite_for_extreme_log_weights`)."""
    model = small_model(num_samples=3, gradient=gradient, learning_rate=1e-3)
    x = tf.constant(np.concatenate([rng.normal(size=(1, 6)) * 300, rng.normal(size=(2, 6))]), tf.float32)
    reseed(model, 1)
    log_weights = model.draws(x, 3)["log_weights"].numpy()
    assert log_weights.min() < -1e4
    before = [v.numpy().copy() for v in model.trainable_variables]
    reseed(model, 1)
    terms, _ = model.objective.update(model, x, tf.ones([3]))
    assert np.isfinite(terms["loss"].numpy())
    moved = [v.numpy() - b for v, b in zip(model.trainable_variables, before)]
    assert all(np.all(np.isfinite(m)) for m in moved) and all(np.any(m != 0) for m in moved)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_normal_names_its_algorithm_and_samples_the_same_distribution_as_tfp_normal(jit_compile):
    """Under XLA the draws are ThreeFry's, elsewhere Philox's (`random_algorithm`); either way
    N(loc, scale^2), reparameterized, with TFP's KL."""
    loc, scale = tf.constant([1.0, -2.0]), tf.constant([0.5, 3.0])
    z = tf.function(lambda: Normal(loc, scale).sample(200_000, seed=[1, 2]), jit_compile=jit_compile)().numpy()
    eps = tf.function(lambda: tf.random.stateless_normal([200_000, 2], [1, 2], alg="threefry" if jit_compile else "philox"),
                      jit_compile=jit_compile)()
    np.testing.assert_allclose(z, loc + scale * eps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=4 * 3.0 / np.sqrt(len(z)))
    np.testing.assert_allclose(z.std(0), [0.5, 3.0], rtol=0.01)
    with tf.GradientTape() as tape:
        tape.watch([loc, scale])
        draw = Normal(loc, scale).sample(seed=[3, 4])
    d_loc, d_scale = tape.gradient(draw, [loc, scale])
    np.testing.assert_allclose(d_loc, 1.0)  # reparameterized: z = loc + scale * eps
    np.testing.assert_allclose(d_scale, (draw - loc) / scale, rtol=1e-5)
    assert float(tfd.kl_divergence(Normal(0.0, 1.0), tfd.Normal(0.0, 1.0))) == 0.0  # TFP's registered KL applies


def grouped_model(kind, groups=3, samples=4):
    params = {"seed": 0, "model": {"latent_dim": 2, "hidden_units": [8], "likelihood": "gaussian"},
              "objective": {"kind": kind, "num_samples": samples, "num_groups": groups},
              "training": {"optimizer": "sgd", "learning_rate": 1.0, "jit_compile": False}}
    return model_of(params, meta_for(6))


def test_piwae_steps_the_decoder_by_iwaes_gradient_and_the_encoder_by_miwaes_of_the_same_draws(rng):
    """M = 3 groups of K = 4: PIWAE's generative step is IWAE's with K = 12 (reparameterized), its
    inference step MIWAE's, from the same 12 draws (the same seed); the two differ."""
    x = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    piwae = update_gradients(grouped_model("piwae"), x, 7)
    iwae = update_gradients(small_model(num_samples=12, gradient="reparameterized"), x, 7)
    miwae = update_gradients(grouped_model("miwae"), x, 7)
    for role, reference in (("generative", iwae), ("inference", miwae)):
        for a, b in zip(piwae[role], reference[role], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(iwae["inference"], miwae["inference"]))
