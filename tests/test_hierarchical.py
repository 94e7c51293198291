"""The hierarchical posterior: the IWHVI estimate of log q(z|x) on a case whose marginal q(z) is
known (psi ~ N(0, I), z|psi ~ N(M psi + b, s^2 I)), importance sampling with it on a model with an
exact log p(x), training with the elbo and iwae objectives, and its reverse model under avb."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Params
from vae_tf.evaluation import evaluate_model, importance_sampling
from vae_tf.posteriors import MIN_SCALE
from vae_tf.posteriors.hierarchical import HierarchicalPosterior
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

from tests.conftest import TINY, LinearGaussian, model_of


def inverse_softplus(y):
    return np.log(np.expm1(y))


def linear_hierarchy(data_dim, m, b, s, tau=None, loc_map=None):
    """A hierarchical posterior with linear networks: psi ~ N(0, I_A) whatever x, z | x, psi ~
    N(x loc_map + M psi + b, s^2 I) (loc_map [D, L], default 0), and tau(psi|z, x) = N(z P + c,
    diag t^2) for tau = (P, c, t) (default: N(0, I), blind to z)."""
    latent, aux = m.shape
    posterior = HierarchicalPosterior(latent_dim=latent, hidden_units=(), activation="linear", auxiliary_dim=aux,
                                      auxiliary_samples=1, name="posterior")
    posterior.build((None, data_dim))
    posterior.auxiliary.layers[-1].set_weights([np.zeros((data_dim, 2 * aux)),
                                                np.concatenate([np.zeros(aux), np.full(aux, inverse_softplus(1 - MIN_SCALE))])])
    loc_map = np.zeros((data_dim, latent)) if loc_map is None else loc_map
    posterior.network.layers[-1].set_weights([
        np.concatenate([np.concatenate([loc_map, np.zeros((data_dim, latent))], 1),
                        np.concatenate([m.T, np.zeros((aux, latent))], 1)], 0),
        np.concatenate([b, np.full(latent, inverse_softplus(s - MIN_SCALE))])])
    p, c, t = tau if tau is not None else (np.zeros((latent, aux)), np.zeros(aux), np.ones(aux))
    posterior.reverse.layers[-1].set_weights([
        np.concatenate([np.zeros((data_dim, 2 * aux)), np.concatenate([p, np.zeros((latent, aux))], 1)], 0),
        np.concatenate([c, inverse_softplus(t - MIN_SCALE)])])
    return posterior


def known_marginal(rng):
    """M [3, 2] with orthogonal columns, so that psi | z is a diagonal Gaussian (tau can be exact)."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 2)))
    m, b, s = q * np.array([1.5, 0.8]), rng.normal(size=3), 0.5
    marginal = tfd.MultivariateNormalTriL(b.astype(np.float32),
                                          np.linalg.cholesky(m @ m.T + s**2 * np.eye(3)).astype(np.float32))
    cov = np.linalg.inv(np.eye(2) + m.T @ m / s**2)  # psi | z ~ N(cov M^T (z - b) / s^2, cov), cov diagonal
    exact_tau = (m @ cov / s**2, -b @ m @ cov / s**2, np.sqrt(np.diag(cov)))
    return m, b, s, marginal, exact_tau


def test_iwhvi_is_an_upper_bound_on_log_q_that_tightens_with_k_tau_and_is_exact_with_the_exact_tau(rng):
    m, b, s, marginal, exact_tau = known_marginal(rng)
    h = tf.zeros([1, 1])
    blind = linear_hierarchy(1, m, b, s)
    gaps = []
    for k_tau in (1, 4, 32, 256):
        draw = blind.draw_from(h, 4000, tf.constant([k_tau, 0]), k_tau)  # h: the MLP trunk's features
        gap = (draw.log_q - marginal.log_prob(draw.z)).numpy()  # log q^(z) - log q(z), [4000, 1]
        gaps.append((gap.mean(), gap.std() / np.sqrt(gap.size)))
    # above log q(z) (so HVM's bound, K_tau = 1, is below the ELBO with the exact log q by gaps[0])
    # and falling towards it: 1.76, 0.83, 0.18, 0.03 nats here (standard errors <= 0.02)
    assert gaps[0][0] > 1.0 and all(mean > -3 * se for mean, se in gaps), gaps
    assert all(a[0] - b[0] > 0.1 for a, b in zip(gaps, gaps[1:])) and gaps[3][0] < 0.1, gaps
    exact = linear_hierarchy(1, m, b, s, exact_tau)
    for k_tau in (1, 5):
        draw = exact.draw_from(h, 100, tf.constant([7, k_tau]), k_tau)
        np.testing.assert_allclose(draw.log_q, marginal.log_prob(draw.z), atol=2e-4)


def test_the_proposal_away_from_its_draws_is_a_gaussian_fitted_to_q(rng):
    """The ELBO surgery's stand-in for q(z|x): on the known marginal (Gaussian) it matches q(z)'s
    log-density at points off q's draws."""
    m, b, s, marginal, _ = known_marginal(rng)
    fitted, description = linear_hierarchy(1, m, b, s).proposal(tf.zeros([1, 1]), tf.constant([3, 1]), 20000,
                                                                2.0).anywhere()
    assert description == "Gaussian fitted to 20000 draws of q(z|x)"
    z = marginal.sample(200, seed=tf.constant([5, 5]))[:, None]  # fresh points, [200, 1, 3]
    # within 0.15 nats (the fitted covariance's sampling error, 0.08 at most here, largest in the
    # tails); the scale (2) is the importance sampler's and is not applied: it would cost 3 log 2
    np.testing.assert_allclose(fitted.log_prob(z), marginal.log_prob(z), atol=0.15)


def test_importance_sampling_with_the_hierarchical_proposal_recovers_the_exact_log_likelihood(rng):
    """Proposal: z = E[z|x] + G psi + s eps around the exact posterior N(E[z|x], C) (G = 0.8
    chol(C), s^2 = 0.5 diag C), with tau blind to z; K_tau = 4 draws of psi per z."""
    truth = LinearGaussian(rng)
    d, latent = truth.w.shape
    mean_map = truth.w @ truth.posterior_cov.T / truth.sigma**2  # E[z|x] = (x - b) mean_map
    g = 0.8 * np.linalg.cholesky(truth.posterior_cov)
    posterior = linear_hierarchy(d, g, -truth.b @ mean_map, np.sqrt(0.5 * np.diag(truth.posterior_cov)).mean(),
                                 loc_map=mean_map)
    x = (rng.normal(size=(20, latent)) @ truth.w.T + truth.b + 0.5 * rng.normal(size=(20, d))).astype(np.float32)
    h = tf.constant(x)
    proposal = posterior.proposal(h, tf.constant([0, 0]), 1, 1.0).distribution
    proposal.auxiliary_samples = 4
    estimate = importance_sampling(x, lambda _: proposal, truth.likelihood, standard_normal(latent), 5000, 1000,
                                   tf.constant([5, 6]))["log_likelihood"].numpy()
    exact = truth.exact_log_likelihood(x)
    assert abs(np.mean(estimate - exact)) < 0.05 and np.max(np.abs(estimate - exact)) < 0.2


def test_the_auxiliary_loss_is_minus_log_tau_at_the_psi_that_made_z_and_trains_tau_alone(rng):
    """On the known marginal: its mean is E[-log tau(psi|z)], the conditional entropy of psi given
    z (0.5 sum log(2 pi e diag C), C = Cov[psi|z]) with the exact tau and A/2 log(2 pi e) with
    tau = N(0, I); its z are the draw's; its gradient reaches tau's variables only."""
    m, b, s, _, exact_tau = known_marginal(rng)
    h, seed = tf.zeros([1, 1]), tf.constant([2, 9])
    exact, blind = linear_hierarchy(1, m, b, s, exact_tau), linear_hierarchy(1, m, b, s)
    draw = exact.draw(h, 20000, seed)
    loss = draw.auxiliary_loss.numpy()
    assert loss.shape == (20000, 1)
    np.testing.assert_array_equal(draw.z, exact.sample_from(h, 20000, seed))  # the sampler's z, for its seed
    entropy = 0.5 * np.sum(np.log(2 * np.pi * np.e * exact_tau[2] ** 2))
    assert abs(np.mean(loss) - entropy) < 4 * np.std(loss) / np.sqrt(loss.size), (np.mean(loss), entropy)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(blind.draw(h, 20000, seed).auxiliary_loss)
    assert abs(loss.numpy() - np.log(2 * np.pi * np.e)) < 0.02  # A = 2 dimensions, psi ~ N(0, I)
    gradients = dict(zip([v.path for v in blind.trainable_variables], tape.gradient(loss, blind.trainable_variables)))
    reverse = {v.path for v in blind.reverse.trainable_variables}
    assert reverse and all(np.any(gradients[path] != 0) for path in reverse)
    assert all(g is None for path, g in gradients.items() if path not in reverse)


def test_under_avb_the_model_step_trains_the_reverse_model_too(digits):
    """AVB takes no log q, so tau learns from the auxiliary loss alone: the model step moves every
    inference variable, tau's included (the implicit kinds have none, `test_avb`)."""
    model = model_of({"model": {"latent_dim": 2, "hidden_units": [16], "posterior": {
        "kind": "hierarchical", "auxiliary_dim": 2}}, "objective": {"kind": "avb", "discriminator_units": [16]}},
        digits.meta)
    x, objective = tf.constant(digits.train[:64]), model.objective
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    objective.model_step(model, x, tf.ones([64]), objective.reference(model, model.likelihood.network_input(x)))
    moved = {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())}
    reverse = {v.path for v in model.posterior.reverse.trainable_variables}
    assert reverse and moved == {v.path for v in model.variables_by_role("inference", "generative")}


def hierarchical(objective, k_tau=3):
    return Params.model_validate({**TINY, "model": {**TINY["model"], "posterior": {
        "kind": "hierarchical", "auxiliary_dim": 2, "auxiliary_samples": k_tau}}, "objective": objective})


def test_the_hierarchical_posterior_refuses_dreg_and_the_vampprior_naming_the_keys():
    """When params are read (pydantic's ValidationError; `load_params` makes it a ParamsError)."""
    with pytest.raises(ValueError, match="objective.gradient: dreg .* 'hierarchical' posterior"):
        hierarchical({"kind": "iwae", "num_samples": 3})
    params = hierarchical({"kind": "elbo"}).model_dump()
    params["model"]["prior"] = {"kind": "vamp"}
    with pytest.raises(ValueError, match="model.prior / model.posterior: the 'vamp' prior .* 'hierarchical'"):
        Params.model_validate(params)


@pytest.mark.parametrize("objective", [{"kind": "elbo"}, {"kind": "iwae", "num_samples": 3,
                                                           "gradient": "reparameterized"}], ids=["elbo", "iwae"])
def test_the_hierarchical_posterior_trains_with_either_bound_and_evaluates(digits, tmp_path, monkeypatch, objective):
    from vae_tf.training import train

    monkeypatch.chdir(tmp_path)
    params = hierarchical(objective)
    history = train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    bounds = history.history["val_bound"]
    assert len(bounds) == 3 and bounds[-1] > bounds[0], bounds
    import keras

    model = keras.models.load_model(tmp_path / "model.keras")
    metrics = evaluate_model(model, digits.test[:32], params.evaluation, seed=0)["metrics"]
    assert "IWHVI" in metrics["estimator"] and "K_tau=3" in metrics["estimator"]
    assert "Gaussian fitted" in metrics["elbo_surgery"]["estimator"]
    # log p(x) >= L_K >= ELBO in expectation; the estimates from 20 draws keep that order on average
    assert -metrics["nll"] > metrics["elbo"] and np.isfinite(metrics["ais"]["nll"])
