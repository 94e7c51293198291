"""The adversarial autoencoder: each phase moves its own players, it needs only draws of the
prior, its log-likelihood is estimated like any model's (the linear Gaussian's exact log p(x)),
and a short run on digits keeps the discriminator away from 0 and 1."""


import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Params
from vae_tf.objectives.params import AAEParams
from vae_tf.evaluation import evaluate_model
from vae_tf.likelihoods.gaussian import MIN_SCALE as LIKELIHOOD_MIN_SCALE, GaussianLikelihood
from vae_tf.models import VAE
from vae_tf.objectives import AAE
from vae_tf.posteriors import MIN_SCALE
from vae_tf.posteriors.gaussian import GaussianPosterior
from vae_tf.priors import Prior, StandardNormalPrior
from vae_tf.priors.ring import RingPrior

from tests.conftest import TINY, LinearGaussian, model_of


def small_aae(digits, prior="standard_normal"):
    return model_of({**TINY, "model": {"latent_dim": 2, "hidden_units": [16], "prior": prior},
                     "objective": {"kind": "aae", "discriminator_units": [16]}}, digits.meta)


def changed_by(model, step) -> set[str]:
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    step()
    return {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())}


@pytest.mark.parametrize("prior", ["standard_normal", {"kind": "flow", "made_units": [8]}],
                         ids=["standard_normal", "flow"])
def test_each_phase_moves_its_own_players_and_a_prior_with_reparameterized_draws(digits, prior):
    """D's step moves D alone; the reconstruction step the encoder and decoder; the
    regularisation step the encoder and a flow prior (its draws are reparameterized), never D nor
    the decoder (two steps: a flow's hidden layers get their first gradient once its output
    layer, which starts at zero, has moved)."""
    model = small_aae(digits, prior)
    x, weights = tf.constant(digits.train[:64]), tf.ones([64])
    paths = {role: {v.path for v in model.variables_by_role(role)} for role in ("inference", "generative", "adversary")}
    objective, decoder = model.objective, {v.path for v in model.likelihood.trainable_variables}
    prior_paths = {v.path for v in model.prior.trainable_variables}
    assert changed_by(model, lambda: objective.discriminator_step(model, x, weights)) == paths["adversary"]
    assert changed_by(model, lambda: objective.reconstruction_step(model, x, weights)) == paths["inference"] | decoder
    moved = changed_by(model, lambda: [objective.regularization_step(model, x, weights) for _ in range(2)])
    assert moved == paths["inference"] | prior_paths and bool(prior_paths) == (prior != "standard_normal")


class DrawsOnly(Prior):
    """A prior that can only be drawn from: its distribution has `sample` and nothing else."""

    def __init__(self, prior, **kwargs):
        super().__init__(prior.latent_dim, **kwargs)
        self.prior = prior

    def distribution(self, posterior=None):
        class Sampler:
            sample = self.prior.distribution().sample

        return Sampler()


def test_the_aae_trains_with_a_prior_it_can_only_draw_from(digits):
    import keras

    from vae_tf.models.factory import build_parts

    params = Params.model_validate({**TINY, "objective": {"kind": "aae", "discriminator_units": [16]}})
    model = VAE(**{**build_parts(params, digits.meta), "prior": DrawsOnly(RingPrior(2, 8, 2.0, 0.3))})
    model.build((None, digits.meta.dimension))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), adversary_optimizer=keras.optimizers.Adam(1e-3))
    model.fit(digits.train[:256], batch_size=64, epochs=2, verbose=0)
    history = model.history.history
    assert all(np.all(np.isfinite(values)) for values in history.values())


def test_the_aae_log_likelihood_is_estimated_like_any_models(rng):
    """An AAE whose encoder and decoder are a linear Gaussian model's (probabilistic PCA, exact
    log p(x)) and its exact posterior's mean with diagonal scales: evaluation's IS and AIS
    estimates are within 0.1 nats of the exact value for every example."""
    truth = LinearGaussian(rng)
    d, latent = truth.w.shape
    model = VAE(likelihood=GaussianLikelihood(d, (), "linear", name="likelihood"),
                posterior=GaussianPosterior(latent_dim=latent, hidden_units=(), activation="linear", name="posterior"),
                prior=StandardNormalPrior(latent, name="prior"),
                objective=AAE(latent_dim=latent, activation="leaky_relu", **AAEParams().settings(), name="objective"))
    model.build((None, d))
    inverse_softplus = lambda y: np.log(np.expm1(y))  # noqa: E731
    mean_map = truth.w @ truth.posterior_cov.T / truth.sigma**2  # E[z|x] = (x - b) mean_map
    model.posterior.network.layers[-1].set_weights([
        np.concatenate([mean_map, np.zeros_like(mean_map)], axis=1),
        np.concatenate([-truth.b @ mean_map, inverse_softplus(np.sqrt(np.diag(truth.posterior_cov)) - MIN_SCALE)])])
    model.likelihood.network.layers[-1].set_weights([
        np.concatenate([truth.w.T, np.zeros_like(truth.w.T)], axis=1),
        np.concatenate([truth.b, np.full(d, inverse_softplus(truth.sigma - LIKELIHOOD_MIN_SCALE))])])
    x = (rng.normal(size=(20, latent)) @ truth.w.T + truth.b + 0.5 * rng.normal(size=(20, d))).astype(np.float32)
    params = Params.model_validate({"evaluation": {"num_samples": 2000, "batch_size": 20, "surgery_samples": 4,
                                                   "ais": {"num_chains": 64, "num_steps": 2000}}}).evaluation
    result = evaluate_model(model, x, params, seed=0)
    exact = -np.mean(truth.exact_log_likelihood(x))
    assert result["metrics"]["nll"] == pytest.approx(exact, abs=0.1)
    assert result["metrics"]["ais"]["nll"] == pytest.approx(exact, abs=0.1)
    np.testing.assert_allclose(result["log_likelihood"], truth.exact_log_likelihood(x), atol=0.1)


@pytest.mark.slow
def test_short_aae_run_on_digits_keeps_the_discriminator_in_play(tmp_path, digits, monkeypatch):
    """A ring prior in two dimensions: no NaN, D's accuracy neither near 0 nor 1 in any epoch,
    the reconstruction improves, and the trained model evaluates (IS and AIS)."""
    from vae_tf.training import train

    params = Params.model_validate({
        **TINY, "model": {"latent_dim": 2, "hidden_units": [64], "prior": "ring"},
        "objective": {"kind": "aae", "discriminator_units": [64]},
        "training": {"epochs": 30, "early_stopping_patience": 30},
    })
    monkeypatch.chdir(tmp_path)  # dvclive looks for a repository from the working directory
    history = train(params, digits, tmp_path / "aae.keras", tmp_path / "live", tmp_path / "backup").history
    for name, values in history.items():
        assert np.all(np.isfinite(values)), name
    for name in ("discriminator_accuracy", "val_discriminator_accuracy"):
        assert 0.05 < min(history[name]) and max(history[name]) < 0.98, (name, history[name])
    assert history["val_reconstruction"][-1] > history["val_reconstruction"][0] + 10
    import keras

    model = keras.models.load_model(tmp_path / "aae.keras")
    metrics = evaluate_model(model, digits.test[:64], params.evaluation, seed=0)["metrics"]
    assert np.isfinite(metrics["nll"]) and np.isfinite(metrics["ais"]["nll"])
