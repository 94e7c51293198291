"""Learnable priors: the mixture of Gaussians and the VampPrior. Closed forms at one component,
gradients that reach every prior variable (and, for the VampPrior, the encoder through p(z)),
DReG's inference gradient with a prior made of the encoder, and the per-dimension KL."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from vae_tf.errors import ParamsError
from vae_tf.evaluation import evaluate_model, kl_per_dimension
from vae_tf.config import Params
from vae_tf.objectives.bounds import iwae_bound
from vae_tf.priors.mixture import GaussianMixture, gaussian_mixture
from vae_tf.tfp import Normal, tfd

from tests.conftest import TINY, TINY_AVB, meta_for, model_of, reseed
from tests.test_evaluation import peak_growth_mib
from tests.test_roles import applied_gradients


def model_with_prior(prior, objective=None, posterior="gaussian"):
    params = {"model": {"latent_dim": 2, "hidden_units": [8], "likelihood": "gaussian", "posterior": posterior,
                        "prior": prior}, "training": {"optimizer": "sgd", "learning_rate": 1.0}}
    return model_of({**params, "objective": objective or {"kind": "elbo"}}, meta_for(3))


@pytest.fixture
def x(rng):
    return tf.constant(rng.uniform(size=(6, 3)), tf.float32)


def test_a_one_component_mixture_is_its_gaussian(rng):
    model = model_with_prior({"kind": "mixture", "num_components": 1})
    prior = model.prior
    prior.locs.assign([[0.5, -1.0]])
    prior.raw_scales.assign([[0.2, -0.3]])
    z = tf.constant(rng.normal(size=(7, 2)), tf.float32)
    gaussian = tfd.Independent(Normal(prior.locs[0], tf.nn.softplus(prior.raw_scales[0]) + 1e-5), 1)
    np.testing.assert_allclose(prior.distribution().log_prob(z), gaussian.log_prob(z), rtol=1e-6)
    np.testing.assert_allclose(prior.marginals().log_prob(z), gaussian.distribution.log_prob(z), rtol=1e-6)


def test_a_one_component_vamp_prior_is_the_posterior_at_its_pseudo_input(rng):
    model = model_with_prior({"kind": "vamp", "num_components": 1})
    u = model.prior.pseudo_inputs
    z = tf.constant(rng.normal(size=(7, 2)), tf.float32)
    q = model.posterior.distribution(tf.convert_to_tensor(u))  # batch [1]
    np.testing.assert_allclose(model.prior_distribution().log_prob(z), q.log_prob(z[:, None])[:, 0], rtol=1e-6)


def mixture_parameters(rng, components, latent, scales):
    """Weights, means N(0, 3^2) and scales uniform in `scales`, as float32 variables."""
    return (tf.Variable(rng.normal(size=components), dtype=tf.float32),
            tf.Variable(3 * rng.normal(size=(components, latent)), dtype=tf.float32),
            tf.Variable(rng.uniform(*scales, size=(components, latent)), dtype=tf.float32))


def test_the_gaussian_mixture_density_is_the_closed_form_at_sharp_components_with_tfps_gradients(rng):
    """`GaussianMixture`'s matrix-product log-density at z [3, 4, L] next to components with
    scales down to 0.01 at means of 3 (where its terms, computed in float32, err by 1e-3 nats,
    over 30x the tolerance): the closed form in float64 (numpy) to float32 rounding, and the
    gradients in z and in every parameter those of TFP's `MixtureSameFamily`."""
    logits, locs, scales = mixture_parameters(rng, 7, 5, (0.01, 2.0))
    near = locs.numpy()[rng.integers(0, 7, size=(3, 4))] + 0.02 * rng.normal(size=(3, 4, 5))
    z = tf.constant(near, tf.float32)
    m, s, w, at = (np.float64(v.numpy()) for v in (locs, scales, logits, z))
    log_components = (-0.5 * (((at[..., None, :] - m) / s) ** 2).sum(-1) - np.log(s).sum(-1)
                      - 2.5 * np.log(2 * np.pi))
    exact = logsumexp(log_components + w - logsumexp(w), axis=-1)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        ours = gaussian_mixture(logits, locs, scales).log_prob(z)
        tfps = tfd.MixtureSameFamily(tfd.Categorical(logits=logits), tfd.Independent(Normal(locs, scales), 1)).log_prob(z)
    np.testing.assert_allclose(ours, exact, rtol=1e-6, atol=1e-5)
    for v in (z, logits, locs, scales):
        np.testing.assert_allclose(tape.gradient(ours, v), tape.gradient(tfps, v), rtol=1e-4,
                                   atol=1e-5 * np.abs(tape.gradient(tfps, v)).max())


def test_a_gaussian_mixture_of_other_components_is_tfps_mixture(rng):
    """Components other than diagonal Gaussians (here logistic) take TFP's own log-density."""
    logits, locs, scales = mixture_parameters(rng, 4, 3, (0.3, 2.0))
    z = tf.constant(rng.normal(size=(6, 3)), tf.float32)
    components = tfd.Independent(tfd.Logistic(locs, scales), 1)
    np.testing.assert_array_equal(GaussianMixture(tfd.Categorical(logits=logits), components).log_prob(z),
                                  tfd.MixtureSameFamily(tfd.Categorical(logits=logits), components).log_prob(z))


MIXTURE_PEAK = """
import resource, sys
import numpy as np, tensorflow as tf
from vae_tf.priors.mixture import gaussian_mixture
draws, components, latent = 10000, 500, int(sys.argv[1])
rng = np.random.default_rng(0)
prior = gaussian_mixture(tf.zeros(components), rng.normal(size=(components, latent)).astype(np.float32),
                         np.ones((components, latent), np.float32))
z = tf.constant(rng.normal(size=(draws, latent)), tf.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prior.log_prob(z)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.slow
def test_a_mixture_priors_density_memory_does_not_grow_with_the_latent_dimension():
    """Peak memory of log p(z) for 10,000 draws under 500 components, each size in a process of
    its own: 16x the latent dimension (8 to 128) adds less than 500 MiB. It holds [draws, C]
    (measured: about 145 MiB at either size, once 180 MiB more); TFP's broadcast holds [draws, C,
    L] (measured: 2.4 GiB more at L = 64 than at 8)."""
    small, large = peak_growth_mib(MIXTURE_PEAK, 8), peak_growth_mib(MIXTURE_PEAK, 128)
    assert large - small < 500, (small, large)


@pytest.mark.parametrize("prior", ["mixture", "vamp"])
def test_one_step_moves_every_prior_variable_and_the_vamp_prior_the_encoder_through_p_z(x, prior):
    model = model_with_prior({"kind": prior, "num_components": 3})
    gradients = applied_gradients(model, x, 1)
    for v in model.prior.trainable_variables:
        assert np.all(gradients[v.path] != 0), v.path  # every weight, mean, scale and pseudo-input
    # log p(z) at fixed z: its gradient reaches the encoder only through a VampPrior
    z = tf.constant([[0.3, -0.2], [1.0, 0.5]])
    with tf.GradientTape() as tape:
        log_p = tf.reduce_sum(model.prior_distribution().log_prob(z))
    encoder = tape.gradient(log_p, model.posterior.trainable_variables)
    assert any(g is not None and np.any(g.numpy() != 0) for g in encoder) == (prior == "vamp")


@pytest.mark.parametrize("init", ["data", "random"])
def test_vamp_pseudo_inputs_start_as_distinct_training_images_or_stay_random(rng, init):
    model = model_with_prior({"kind": "vamp", "num_components": 4, "init": init})
    start = model.prior.pseudo_inputs.numpy().copy()
    x = rng.uniform(size=(10, 3)).astype(np.float32)
    model.adapt(x)
    u, h = model.prior.pseudo_inputs.numpy(), model.likelihood.network_input(tf.constant(x)).numpy()
    if init == "random":
        np.testing.assert_array_equal(u, start)
        return
    matches = [np.flatnonzero(np.all(h == row, axis=1)) for row in u]
    assert all(len(m) == 1 for m in matches) and len({int(m[0]) for m in matches}) == 4


def test_the_vamp_prior_needs_a_posterior_with_a_density():
    """Refused when params are read (pydantic's ValidationError; `load_params` makes it a ParamsError)."""
    with pytest.raises(ValueError, match="model.prior / model.posterior: the 'vamp' prior .* 'implicit' posterior"):
        Params.model_validate({**TINY_AVB, "model": {**TINY_AVB["model"], "prior": "vamp"}})


def test_vamp_pseudo_inputs_are_not_more_than_the_training_images(rng):
    """init: data draws distinct images: 11 of 10 used to repeat some, though the README says distinct."""
    model = model_with_prior({"kind": "vamp", "num_components": 11})
    with pytest.raises(ParamsError, match=r"model.prior.num_components: 11 distinct pseudo-inputs cannot start as the "
                                          r"10 training images \(init: data\); lower it to 10 at most, or set init: random"):
        model.adapt(rng.uniform(size=(10, 3)).astype(np.float32))


@pytest.mark.slow
def test_dreg_with_a_vamp_prior_is_unbiased_for_the_iwae_gradient(x):
    """The VampPrior is a function of the encoder besides through z; DReG's inference gradient
    keeps that explicit term. Averaged over draws it equals the reparameterized gradient of L_K
    (within 4 standard errors for every encoder weight), as it must."""
    model = model_with_prior({"kind": "vamp", "num_components": 3}, {"kind": "iwae", "num_samples": 4})
    inference = model.variables_by_role("inference")
    start = [v.numpy().copy() for v in model.trainable_variables]

    def restore():
        for v, value in zip(model.trainable_variables, start):
            v.assign(value)

    dreg, reparameterized = [], []
    for seed in range(300):
        restore()
        gradients = applied_gradients(model, x, seed)
        dreg.append(np.concatenate([gradients[v.path].ravel() for v in inference]))
        restore()
        reseed(model, seed)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(iwae_bound(model.draws(x, 4)["log_weights"]))
        reparameterized.append(np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, inference)]))
    dreg, reparameterized = np.array(dreg), np.array(reparameterized)
    difference = dreg - reparameterized
    stderr = difference.std(axis=0) / np.sqrt(len(difference)) + 1e-7
    assert np.all(np.abs(difference.mean(axis=0)) < 4 * stderr), np.max(np.abs(difference.mean(axis=0)) / stderr)


def test_kl_per_dimension_of_a_mixture_prior_is_the_monte_carlo_of_its_closed_form(rng):
    """A one-component mixture has the closed form of its Gaussian: the Monte Carlo path agrees."""
    model = model_with_prior({"kind": "mixture", "num_components": 1})
    mean = tf.constant(rng.normal(size=(4, 2)), tf.float32)
    scale = tf.constant(rng.uniform(0.3, 1.5, size=(4, 2)), tf.float32)
    marginals = model.prior.marginals()
    exact = tfd.kl_divergence(Normal(mean, scale), Normal(marginals.components_distribution.loc[:, 0],
                                                          marginals.components_distribution.scale[:, 0]))
    estimate = kl_per_dimension(mean, scale, marginals, tf.constant([1, 2]))
    np.testing.assert_allclose(estimate, exact, atol=0.15)


@pytest.mark.parametrize("prior", [{"kind": "mixture", "num_components": 3}, {"kind": "vamp", "num_components": 3},
                                   {"kind": "flow", "made_units": [8]}], ids=lambda prior: prior["kind"])
def test_a_model_with_a_learnable_prior_evaluates(digits, prior):
    model = model_of({**TINY, "model": {**TINY["model"], "prior": prior}}, digits.meta)
    params = Params.model_validate(TINY).evaluation
    result = evaluate_model(model, digits.test[:16], params, seed=0)
    metrics = result["metrics"]
    assert np.isfinite(metrics["nll"]) and metrics["elbo"] < -metrics["nll"] + 3 * metrics["nll_stderr"]
    assert np.all(np.asarray(result["kl_per_dim"]) > -0.05)  # a KL, up to Monte Carlo error


def flow_prior_model(rng):
    """A model with a 2-step flow prior whose MADE outputs are random (not the identity)."""
    model = model_with_prior({"kind": "flow", "num_steps": 2, "made_units": [8]})
    for step in model.prior.steps:
        for v in (step.kernels[-1], step.biases[-1]):
            v.assign(0.4 * rng.normal(size=v.shape))
    return model


def test_the_flow_prior_is_a_normalised_density_with_the_flows_log_determinant_once(rng):
    """log p(z) = log N(g^{-1}(z); 0, I) + log |det dg^{-1}/dz| with the Jacobian by autodiff, and
    p integrates to one over the plane (a sum over a fine grid)."""
    prior = flow_prior_model(rng).prior.distribution()
    z = tf.constant(rng.normal(size=(5, 2)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        e = prior.bijector.inverse(z)
    log_det = np.log(np.abs(np.linalg.det(tape.batch_jacobian(e, z).numpy())))
    expected = tfd.Independent(Normal(tf.zeros(2), 1.0), 1).log_prob(e).numpy() + log_det
    np.testing.assert_allclose(prior.log_prob(z), expected, rtol=1e-5, atol=1e-5)
    side = np.linspace(-9, 9, 601, dtype=np.float32)
    grid = np.stack(np.meshgrid(side, side), -1).reshape(-1, 2)
    mass = np.exp(prior.log_prob(grid).numpy()).sum() * (side[1] - side[0]) ** 2
    assert abs(mass - 1) < 0.01, mass
    from tests.test_contracts import check_density_matches_samples

    check_density_matches_samples(prior.sample(20_000, seed=[3, 4]).numpy(), prior.log_prob, 5)


def test_two_steps_move_every_flow_prior_weight(x, rng):
    """The MADEs' output layers start at zero (each step the identity), so the first step moves
    them and the second, through them, the hidden layers too."""
    model = model_with_prior({"kind": "flow", "num_steps": 2, "made_units": [8]})
    before = {v.path: v.numpy().copy() for v in model.prior.trainable_variables}
    applied_gradients(model, x, 1)
    applied_gradients(model, x, 2)
    for v in model.prior.trainable_variables:
        assert np.any(v.numpy() != before[v.path]), v.path


def test_evaluation_takes_stated_subsets_for_the_surgery_and_ais(digits):
    """`surgery_examples` below the test set's size: the aggregate posterior of that many images,
    named in the estimator (I then at most log of it); `ais.num_examples`: AIS on the first N images
    only, its figures those of the same images evaluated alone."""
    model = model_of({**TINY, "model": {**TINY["model"], "prior": {"kind": "vamp", "num_components": 3}}}, digits.meta)
    base = Params.model_validate(TINY).evaluation.model_dump()
    params = Params.model_validate({"evaluation": {**base, "surgery_examples": 10, "batch_size": 8,
                                                   "ais": {**base["ais"], "num_examples": 8}}}).evaluation
    metrics = evaluate_model(model, digits.test[:24], params, seed=0)["metrics"]
    assert "aggregated posterior of 10 of the 24 images" in metrics["elbo_surgery"]["estimator"]
    assert 0 < metrics["elbo_surgery"]["mutual_information"] <= np.log(10)
    assert metrics["ais"]["num_examples"] == 8 and "the first 8 of the 24 images" in metrics["ais"]["estimator"]
    alone = evaluate_model(model, digits.test[:8], params, seed=0)["metrics"]["ais"]
    assert metrics["ais"]["nll"] == alone["nll"] and "num_examples" not in alone
