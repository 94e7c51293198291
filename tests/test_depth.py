"""Depth (vae_tf.models.depth): two stochastic layers against the exact log p(x) of a linear-Gaussian
chain z2 -> z1 -> x, the joint latent's densities against TFP's own, params that cannot stack
refused by name, and a two-layer model trained, saved, loaded and evaluated on digits."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_tf.config import Params
from vae_tf.errors import ParamsError
from vae_tf.evaluation import evaluate_model, model_log_likelihood
from vae_tf.export import export_model
from vae_tf.likelihoods.gaussian import MIN_SCALE as LIKELIHOOD_MIN_SCALE, GaussianLikelihood
from vae_tf.models import VAE
from vae_tf.models.depth import StackedPosterior, StackedPrior
from vae_tf.objectives import ELBO, IWAE
from vae_tf.objectives.params import ELBOParams, IWAEParams
from vae_tf.posteriors import MIN_SCALE
from vae_tf.posteriors.gaussian import GaussianPosterior
from vae_tf.priors import StandardNormalPrior
from vae_tf.tfp import tfd

from tests.conftest import TINY, meta_for, model_of, reseed


def inverse_softplus(y):
    return np.log(np.expm1(y))


class LinearGaussianChain:
    """z2 ~ N(0, I), z1 | z2 ~ N(A z2 + a, s^2 I), x | z1 ~ N(W z1 + b, sigma^2 I): p(x) is
    N(W a + b, W S W^T + sigma^2 I), S = A A^T + s^2 I (z1's marginal covariance). The exact
    posterior is p(z1|x) p(z2|z1) (z2 is independent of x given z1), both Gaussian:
    p(z1|x) = N(C1 (S^-1 a + W^T (x - b) / sigma^2), C1), C1 = (S^-1 + W^T W / sigma^2)^-1;
    p(z2|z1) = N(C2 A^T (z1 - a) / s^2, C2), C2 = (I + A^T A / s^2)^-1."""

    def __init__(self, rng, d=6, l1=3, l2=2, s=0.6, sigma=0.5, diagonal=False):
        """`diagonal`: A and W with orthogonal columns, so that both exact posterior factors have
        diagonal covariances (the model's q is then the exact posterior)."""
        self.a_map, self.a = rng.normal(size=(l1, l2)), rng.normal(size=l1)
        self.w, self.b = rng.normal(size=(d, l1)), rng.normal(size=d)
        if diagonal:
            self.a_map = np.eye(l1, l2) * rng.uniform(0.5, 2.0, size=l2)
            self.w = np.linalg.qr(self.w)[0] * rng.uniform(0.5, 2.0, size=l1)
        self.s, self.sigma, self.sizes = s, sigma, (d, l1, l2)
        self.z1_cov = self.a_map @ self.a_map.T + s**2 * np.eye(l1)
        self.c1 = np.linalg.inv(np.linalg.inv(self.z1_cov) + self.w.T @ self.w / sigma**2)
        self.c2 = np.linalg.inv(np.eye(l2) + self.a_map.T @ self.a_map / s**2)

    def sample(self, rng, n):
        d, l1, l2 = self.sizes
        z2 = rng.normal(size=(n, l2))
        z1 = z2 @ self.a_map.T + self.a + self.s * rng.normal(size=(n, l1))
        return (z1 @ self.w.T + self.b + self.sigma * rng.normal(size=(n, d))).astype(np.float32)

    def exact_log_likelihood(self, x):
        cov = self.w @ self.z1_cov @ self.w.T + self.sigma**2 * np.eye(self.sizes[0])
        return tfd.MultivariateNormalTriL(self.w @ self.a + self.b, np.linalg.cholesky(cov)).log_prob(
            x.astype(np.float64)).numpy()

    def model(self, inflate=1.0, objective=None):
        """A two-layer VAE of linear networks holding this chain, its q the exact posterior with
        diagonal covariances (each standard deviation times `inflate`), trained on `objective`
        (the ELBO by default) by SGD with learning rate 1."""
        d, l1, l2 = self.sizes
        layers = [GaussianPosterior(latent_dim=size, hidden_units=(), activation="linear", name=f"q{level}")
                  for level, size in enumerate((l1, l2), start=1)]
        model = VAE(likelihood=GaussianLikelihood(d, (), "linear", name="likelihood"),
                    posterior=StackedPosterior(layers, name="posterior"),
                    prior=StackedPrior(StandardNormalPrior(l2, name="top"), (l1, l2), [()], "linear", name="prior"),
                    objective=objective or ELBO(**ELBOParams().settings(), name="objective"))
        model.build((None, d))
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        s1_inverse = np.linalg.inv(self.z1_cov)
        q1_map = self.c1 @ self.w.T / self.sigma**2  # E[z1|x] = q1_map (x - b) + C1 S^-1 a
        q2_map = self.c2 @ self.a_map.T / self.s**2  # E[z2|z1] = q2_map (z1 - a)
        set_linear(layers[0], q1_map, self.c1 @ s1_inverse @ self.a - q1_map @ self.b,
                   inverse_softplus(inflate * np.sqrt(np.diag(self.c1)) - MIN_SCALE))
        set_linear(layers[1], q2_map, -q2_map @ self.a, inverse_softplus(inflate * np.sqrt(np.diag(self.c2)) - MIN_SCALE))
        set_linear(model.prior.conditionals[0], self.a_map, self.a, inverse_softplus(self.s - MIN_SCALE))
        set_linear(model.likelihood, self.w, self.b, inverse_softplus(self.sigma - LIKELIHOOD_MIN_SCALE))
        return model


def set_linear(part, mean_map, shift, raw_scale):
    """The last dense layer of `part` (a network, or a part holding one as `network`) as mean =
    mean_map @ input + shift, raw scale constant (its softplus + the floor is the scale)."""
    network = getattr(part, "network", part)
    out, width = mean_map.shape
    network.layers[-1].set_weights([np.concatenate([mean_map.T, np.zeros((width, out))], axis=1).astype(np.float32),
                                    np.concatenate([shift, np.broadcast_to(raw_scale, (out,))]).astype(np.float32)])


@pytest.fixture()
def chain(rng):
    return LinearGaussianChain(rng)


def test_the_stacked_densities_are_the_chains(chain, rng):
    """log q(z|x) of the draws = q(z1|x)'s + q(z2|z1)'s, and log p(z) = p(z2)'s + p(z1|z2)'s, each
    the closed form of the linear-Gaussian chain's factor (scipy-free: TFP's MVN)."""
    model = chain.model()
    x = chain.sample(rng, 5)
    draw = model.posterior.draw(tf.constant(x), 4, tf.constant([1, 2]))
    z1, z2 = draw.z[..., :3].numpy().astype(np.float64), draw.z[..., 3:].numpy().astype(np.float64)
    q1_mean = (chain.c1 @ (np.linalg.inv(chain.z1_cov) @ chain.a[:, None]
                           + chain.w.T @ (x.astype(np.float64) - chain.b).T / chain.sigma**2)).T
    q1 = tfd.MultivariateNormalDiag(q1_mean, np.sqrt(np.diag(chain.c1)))
    q2 = tfd.MultivariateNormalDiag(np.einsum("ij,kbj->kbi", chain.c2 @ chain.a_map.T / chain.s**2, z1 - chain.a),
                                    np.sqrt(np.diag(chain.c2)))
    np.testing.assert_allclose(draw.log_q, q1.log_prob(z1) + q2.log_prob(z2), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.posterior.distribution(tf.constant(x)).log_prob(draw.z), draw.log_q,
                               rtol=1e-4, atol=1e-4)
    p1 = tfd.MultivariateNormalDiag(z2 @ chain.a_map.T + chain.a, chain.s * np.ones(3))
    p2 = tfd.MultivariateNormalDiag(np.zeros(2), np.ones(2))
    np.testing.assert_allclose(model.prior_distribution().log_prob(draw.z), p1.log_prob(z1) + p2.log_prob(z2),
                               rtol=1e-4, atol=1e-4)


def test_importance_sampling_and_the_export_recover_the_chains_exact_log_likelihood(chain, rng, tmp_path):
    """IS over the joint latent (K = 5000, q the exact posterior with diagonal covariances, widened)
    and the exported `log_likelihood` both give log p(x) within their Monte Carlo error; the ELBO
    of q stays below it."""
    model = chain.model(inflate=1.2)
    x = chain.sample(rng, 20)
    exact = chain.exact_log_likelihood(x)
    estimate = model_log_likelihood(model, tf.constant(x), 5000, 500, 20, 2.0, tf.constant([3, 4])).numpy()
    assert abs(np.mean(estimate - exact)) < 0.05 and np.max(np.abs(estimate - exact)) < 0.2
    export_model(model, tmp_path / "1", 500, 20, 2.0)
    served = tf.saved_model.load(str(tmp_path / "1")).signatures["log_likelihood"](
        x=tf.constant(x), num_samples=tf.constant(5000), seed=tf.constant(5))["log_likelihood"].numpy()
    assert abs(np.mean(served - exact)) < 0.05 and np.max(np.abs(served - exact)) < 0.2
    params = Params.model_validate({"evaluation": {"num_samples": 2000, "batch_size": 20, "surgery_samples": 4,
                                                   "ais": {"num_chains": 16, "num_steps": 500}}}).evaluation
    result = evaluate_model(model, x, params, seed=0)
    assert result["metrics"]["nll"] == pytest.approx(-np.mean(exact), abs=0.05)
    assert result["metrics"]["ais"]["nll"] == pytest.approx(-np.mean(exact), abs=0.1)
    assert result["metrics"]["elbo"] < np.mean(exact)
    assert [layer["latent_dim"] for layer in result["metrics"]["layers"]] == [3, 2]


def test_dreg_through_the_stack_vanishes_at_the_exact_posterior(rng):
    """With q the exact posterior every importance weight is p(x): DReG's inference gradient is
    then exactly zero (its score terms are gone and the path terms cancel), which needs log q with
    the weights held fixed but the draws' paths kept, through q(z2|z1)'s dependence on z1 too. The
    reparameterized gradient keeps its score terms, non-zero draw by draw."""
    from tests.test_iwae import update_gradients

    chain = LinearGaussianChain(rng, diagonal=True)
    x = tf.constant(chain.sample(rng, 8))
    gradients = {}
    for gradient in ("dreg", "reparameterized"):
        model = chain.model(objective=IWAE(**{**IWAEParams(num_samples=5).settings(), "gradient": gradient},
                                           name="objective"))
        gradients[gradient] = update_gradients(model, x, 3)["inference"]
    assert max(np.max(np.abs(g)) for g in gradients["dreg"]) < 1e-3
    assert max(np.max(np.abs(g)) for g in gradients["reparameterized"]) > 0.1


STACK = {"model": {"latent_dim": 4, "hidden_units": [16], "upper_layers": [{"latent_dim": 2, "hidden_units": [8]}]}}


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"posterior": "implicit"}}, r"model: posterior: with upper_layers each layer's q needs its density"),
    ({"model": {"upper_layers": [{"latent_dim": 2, "posterior": "hierarchical"}]}},
     r"upper_layers\[0\]\.posterior: with upper_layers"),
    ({"model": {"prior": "vamp"}}, r"prior: the 'vamp' prior is made of the encoder of x"),
    ({"model": {"upper_layers": [{"latent_dim": 2, "posterior": "iaf"}]}, "objective": {"kind": "iwae"}},
     r"objective.gradient: dreg .* the 'iaf' posterior does not give"),
    ({"objective": {"kind": "elbo", "refinement": {"steps": 2}}}, r"objective.refinement: .* a stack"),
])
def test_what_cannot_stack_is_refused_by_name(change, message, tmp_path):
    """As `resolve` reads params.yaml: one line naming the key."""
    from vae_tf.config import load_params
    from vae_tf.config.schema import deep_merge

    (tmp_path / "params.yaml").write_text(json.dumps(deep_merge(STACK, change)))
    with pytest.raises(ParamsError, match=message):
        load_params(tmp_path / "params.yaml")


def test_one_layer_params_dump_as_before():
    """No upper layers: `model_dump` has no `upper_layers` key, so resolved params (and every
    DVC stage that depends on them) of one-layer runs are unchanged."""
    assert "upper_layers" not in Params().model_dump(mode="json")["model"]
    assert Params.model_validate(STACK).model_dump(mode="json")["model"]["upper_layers"][0]["latent_dim"] == 2


IAF = {"kind": "iaf", "num_steps": 1, "made_units": [8]}


MIXTURE, FLOW = {"kind": "mixture", "num_components": 3}, {"kind": "flow", "num_steps": 1, "made_units": [8]}


@pytest.mark.parametrize(("posterior", "prior", "objective"), [
    ("gaussian", "standard_normal", {"kind": "elbo"}), ("gaussian", MIXTURE, {"kind": "iwae", "num_samples": 3}),  # DReG
    ("gaussian", FLOW, {"kind": "miwae", "num_groups": 2, "num_samples": 2}),
    ("gaussian", "standard_normal", {"kind": "ciwae", "num_samples": 3}),
    (IAF, MIXTURE, {"kind": "elbo", "kl_warmup_epochs": 5}),
    (IAF, "standard_normal", {"kind": "iwae", "num_samples": 3, "gradient": "reparameterized"}),
    (IAF, FLOW, {"kind": "piwae", "num_groups": 2, "num_samples": 2}),
])
def test_a_stack_composes_with_objectives_top_posteriors_and_top_priors(posterior, prior, objective, digits):
    """Any objective that reads log q over the joint latent, any exact posterior and any prior not
    made of the encoder at the top: the draws have the joint shape, and 20 compiled updates (XLA)
    raise the bound on the same noise."""
    params = {**STACK, "model": {**STACK["model"], "prior": prior,
                                 "upper_layers": [{"latent_dim": 2, "hidden_units": [8], "posterior": posterior}]},
              "objective": objective, "training": {"learning_rate": 0.01}}
    model = model_of(params, meta_for(digits.train.shape[1], "levels", n_levels=17))
    x = tf.constant(digits.train[:64])
    draws = model.draws(x, 3)
    assert draws["z"].shape == (3, 64, 6) and draws["log_weights"].shape == (3, 64)
    assert np.all(np.isfinite(draws["log_weights"].numpy()))

    def bound():  # on the same noise each time
        reseed(model, 5)
        return model.evaluate(x, verbose=0, return_dict=True)["bound"]

    before = bound()
    model.fit(x, epochs=20, verbose=0, batch_size=64)
    assert bound() > before + 10


def test_a_two_layer_model_trains_saves_and_evaluates_on_digits(tmp_path, digits, monkeypatch):
    """Trained by the pipeline's `train` (early stopping, checkpoints), its .keras round trip keeps
    the draws, and its evaluation reports each layer's active units."""
    from vae_tf.training import train

    params = Params.model_validate({**TINY, **STACK, "objective": {"kind": "iwae", "num_samples": 2,
                                                                   "gradient": "reparameterized"}})
    monkeypatch.chdir(tmp_path)
    train(params, digits, tmp_path / "m.keras", tmp_path / "live", tmp_path / "backup")
    model = keras.models.load_model(tmp_path / "m.keras")
    assert model.posterior.latent_dims == (4, 2) and model.prior.latent_dims == (4, 2)
    x = tf.constant(digits.test[:16])
    np.testing.assert_array_equal(model.posterior.draw(x, 2, tf.constant([1, 2])).z,
                                  keras.models.load_model(tmp_path / "m.keras").posterior.draw(x, 2, tf.constant([1, 2])).z)
    metrics = evaluate_model(model, digits.test[:32], params.evaluation, seed=0)["metrics"]
    assert np.isfinite(metrics["nll"]) and np.isfinite(metrics["ais"]["nll"])
    assert [layer["latent_dim"] for layer in metrics["layers"]] == [4, 2]
    assert sum(layer["active_units"] for layer in metrics["layers"]) == metrics["active_units"]
