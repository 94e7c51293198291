"""The objectives' bounds (vae_tf.objectives.bounds) against closed forms: the Gaussian KL, the ELBO
and the IWAE bound on a linear Gaussian model whose log p(x) is exact (importance sampling and the
ELBO surgery: test_evaluation.py)."""

import numpy as np
import tensorflow as tf

from vae_tf.objectives import bounds
from vae_tf.evaluation import importance_sampling
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

from tests.conftest import LinearGaussian


def diagonal_gaussian(loc, scale):
    return tfd.Independent(tfd.Normal(tf.constant(loc, tf.float32), tf.constant(scale, tf.float32)), 1)


def test_gaussian_kl_matches_formula_and_monte_carlo(rng):
    loc, scale = rng.normal(size=(3, 4)), rng.uniform(0.3, 2.0, size=(3, 4))
    q, p = diagonal_gaussian(loc, scale), standard_normal(4)
    z = q.sample(200_000, seed=[1, 2])
    kl = bounds.kl_divergence(q, p, z).numpy()
    formula = 0.5 * np.sum(scale**2 + loc**2 - 1.0 - 2.0 * np.log(scale), axis=-1)
    np.testing.assert_allclose(kl, formula, rtol=1e-5)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()
    stderr = log_ratio.std(axis=0) / np.sqrt(len(log_ratio))
    assert np.all(np.abs(log_ratio.mean(axis=0) - formula) < 4 * stderr)


def test_kl_falls_back_to_monte_carlo_without_a_closed_form():
    q = diagonal_gaussian([[0.5, -0.5]], [[1.0, 0.5]])
    mixture = tfd.MixtureSameFamily(tfd.Categorical(logits=[0.0, 0.0]),
                                    diagonal_gaussian([[-1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]))
    z = q.sample(3, seed=[3, 4])
    expected = np.mean(q.log_prob(z) - mixture.log_prob(z), axis=0)  # mean over the 3 draws
    np.testing.assert_allclose(bounds.kl_divergence(q, mixture, z), expected, rtol=1e-6)


def test_elbo_and_log_weights():
    assert bounds.elbo(tf.constant(-10.0), tf.constant(2.0), 0.5).numpy() == -11.0
    assert bounds.log_importance_weights(-10.0, -1.0, -3.0) == -8.0


def test_iwae_bound_approaches_the_exact_log_likelihood_of_a_linear_gaussian_as_k_grows(rng):
    """L_K with an imperfect proposal: below log p(x), the gap shrinking as K grows."""
    model = LinearGaussian(rng)
    x = (rng.normal(size=(50, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(50, 6))).astype(np.float32)
    exact = model.exact_log_likelihood(x)
    posterior = model.proposal(shift=0.3, inflate=1.5)
    gaps = []
    for k in (1, 10, 100, 2000):
        replicates = [importance_sampling(x, posterior, model.likelihood, standard_normal(2), k, min(k, 500),
                                          tf.constant([k, r]))["log_likelihood"].numpy() for r in range(20)]
        gaps.append(float(np.mean(exact - np.mean(replicates, axis=0))))
    # gaps shrink (3.2, 0.06, 0.003 nats here) until the Monte Carlo error (~1e-3) dominates
    assert gaps[0] > 0.1 and gaps[0] > gaps[1] > gaps[2] > 0, gaps
    assert abs(gaps[-1]) < 0.005, gaps


def test_iwae_bound_is_the_log_mean_weight_and_finite_for_extreme_log_weights():
    log_w = tf.Variable([[-1e4, 3.0, 0.0], [1e4, 1.0, -1e4]])  # [K = 2, batch = 3]
    with tf.GradientTape() as tape:
        bound = bounds.iwae_bound(log_w)
        w = bounds.normalized_weights(log_w)
        surrogate = tf.reduce_sum(bounds.iwae_surrogate(log_w))
    np.testing.assert_allclose(bound, [1e4 - np.log(2), np.log((np.e**3 + np.e) / 2), -np.log(2)], rtol=1e-6)
    gradient = tape.gradient([bound, surrogate], log_w)
    assert np.all(np.isfinite(gradient)) and np.all(np.isfinite(w)) and np.isfinite(surrogate.numpy())
    np.testing.assert_allclose(tf.reduce_sum(w, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[:, 0], [0.0, 1.0])  # d L_K / d log w_k = w~_k
    with tf.GradientTape(persistent=True) as tape:
        bound_sum, surrogate_sum = tf.reduce_sum(bounds.iwae_bound(log_w)), tf.reduce_sum(bounds.iwae_surrogate(log_w))
    # the surrogate's gradient is the bound's: w~
    np.testing.assert_allclose(tape.gradient(surrogate_sum, log_w), tape.gradient(bound_sum, log_w), atol=1e-7)




def linear_gaussian_draws(rng, q_of, k):
    """x from the linear Gaussian model, k draws of q_of(x) per example, and the draws' terms as
    `VAE.draws` gives them (log_weights [k, batch], reconstruction, kl)."""
    model = LinearGaussian(rng)
    x = (rng.normal(size=(40, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(40, 6))).astype(np.float32)
    q = q_of(model, x)
    z = q.sample(k, seed=[5, 6])
    log_px, log_q = model.likelihood(z).log_prob(x), q.log_prob(z)
    log_weights = bounds.log_importance_weights(log_px, standard_normal(2).log_prob(z), log_q)
    draws = {"log_weights": log_weights, "reconstruction": tf.reduce_mean(log_px, axis=0),
             "kl": tf.reduce_mean(log_q - standard_normal(2).log_prob(z), axis=0)}
    return model.exact_log_likelihood(x), draws


def rainforth_objectives(groups, samples):
    from vae_tf.objectives.ciwae import CIWAE
    from vae_tf.objectives.miwae import MIWAE
    from vae_tf.objectives.piwae import PIWAE

    return {"miwae": MIWAE(num_samples=samples, num_groups=groups), "piwae": PIWAE(num_samples=samples, num_groups=groups),
            "ciwae": CIWAE(num_samples=groups * samples, beta=0.3)}


def test_miwae_piwae_and_ciwae_are_log_p_x_exactly_when_q_is_the_exact_posterior(rng):
    """With q = p(z|x) every weight is p(x): each bound is log p(x) (pPCA's closed form)."""
    exact, draws = linear_gaussian_draws(rng, lambda model, x: model.exact_posterior(x), 12)
    objectives = rainforth_objectives(3, 4)
    assert {name: o.draws_per_example for name, o in objectives.items()} == {"miwae": 12, "piwae": 12, "ciwae": 12}
    for name, objective in objectives.items():
        terms = objective.terms(draws)
        np.testing.assert_allclose(terms["bound"], exact, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(terms["objective"], exact, rtol=1e-5, err_msg=name)


def test_with_a_poor_q_the_bounds_order_as_their_definitions_say(rng):
    """On the same M K = 12 draws of an imperfect q, per example: mean log w <= CIWAE <= L_MK, and
    L_{M,K} <= L_MK (the log of a mean of group means is at least the mean of their logs; M = 3
    groups of K = 4); CIWAE is its combination, MIWAE the mean of its groups' L_K."""
    exact, draws = linear_gaussian_draws(rng, lambda model, x: model.proposal(shift=0.3, inflate=1.5)(x), 12)
    objectives = rainforth_objectives(3, 4)
    miwae, piwae, ciwae = (objectives[name].terms(draws)["bound"].numpy() for name in ("miwae", "piwae", "ciwae"))
    mean_log_w, l_mk = tf.reduce_mean(draws["log_weights"], axis=0).numpy(), bounds.iwae_bound(draws["log_weights"]).numpy()
    np.testing.assert_allclose(piwae, l_mk, rtol=1e-6)
    assert np.all(mean_log_w <= ciwae + 1e-4) and np.all(ciwae <= l_mk + 1e-4) and np.all(miwae <= l_mk + 1e-4)
    assert np.mean(exact - l_mk) > 0.01  # a poor q: a gap to close
    np.testing.assert_allclose(ciwae, 0.3 * mean_log_w + 0.7 * l_mk, rtol=1e-6)
    # L_{M,K}: the mean of its M groups' L_K
    groups = np.reshape(draws["log_weights"].numpy(), (3, 4, -1))
    np.testing.assert_allclose(miwae, np.mean([bounds.iwae_bound(g).numpy() for g in groups], axis=0), rtol=1e-6)
