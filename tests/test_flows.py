"""Normalizing-flow posteriors: each step's log-determinant against automatic differentiation,
invertibility, importance sampling with a flow proposal on a model with an exact log p(x), and
the planar posterior in training."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.bijectors import Planar, autoregressive_chain
from vae_tf.networks import MaskedAutoregressive
from vae_tf.config import Params
from vae_tf.evaluation import importance_sampling
from vae_tf.models import build_model
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfb, tfd
from tests.conftest import TINY, LinearGaussian


def random_planar(rng, batch, latent, scale):
    u, w = (scale * rng.normal(size=(batch, latent)).astype(np.float32) for _ in range(2))
    return Planar(u, w, rng.normal(size=batch).astype(np.float32))


@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_planar_log_det_is_that_of_its_jacobian_and_the_inverse_undoes_it(rng, scale):
    batch, latent, k = 4, 3, 5
    step = random_planar(rng, batch, latent, scale)
    z = tf.constant(rng.normal(size=(k, batch, latent)).astype(np.float32))
    flat = tf.reshape(z, [-1, latent])
    with tf.GradientTape() as tape:
        tape.watch(flat)
        y = tf.reshape(step.forward(tf.reshape(flat, [k, batch, latent])), [-1, latent])
    jacobian = tape.batch_jacobian(y, flat).numpy()  # [k * batch, L, L], by automatic differentiation
    _, log_det = np.linalg.slogdet(jacobian)
    np.testing.assert_allclose(step.forward_log_det_jacobian(z, event_ndims=1).numpy().ravel(), log_det, atol=1e-4)
    fresh = tf.constant(y.numpy().reshape(k, batch, latent))  # a new tensor: no cached forward pass to return
    np.testing.assert_allclose(step.inverse(fresh).numpy(), z.numpy(), atol=1e-4)
    np.testing.assert_allclose(step.inverse_log_det_jacobian(fresh, event_ndims=1),
                               -step.forward_log_det_jacobian(z, event_ndims=1), atol=1e-4)


def test_the_gradient_of_a_planar_log_density_anywhere_compiles_under_xla(rng):
    """AIS from a planar q differentiates log q at points it did not draw (the bisection's inverse):
    under XLA that failed for want of a bound on the loop's iterations (the study's cv_planar)."""
    bijector = Planar(*(tf.constant(rng.normal(size=(3,)), tf.float32) for _ in range(2)), tf.constant(0.3))
    q = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(3)), bijector)
    z = tf.constant(rng.normal(size=(5, 3)), tf.float32)

    def gradient(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            log_q = tf.reduce_sum(q.log_prob(z))
        return tape.gradient(log_q, z)

    np.testing.assert_allclose(tf.function(gradient, jit_compile=True)(z), gradient(z), rtol=1e-4, atol=1e-5)


def test_the_constraint_keeps_every_planar_step_invertible(rng):
    """w.u_hat > -1 whatever u and w, so f is increasing along w: distinct points stay distinct."""
    step = random_planar(rng, 10_000, 2, scale=2.0)
    assert np.all(step.w_u_hat.numpy() > -1.0)
    # the unconstrained u would fold the line: w.u < -1 for many of them
    assert np.mean(np.sum(step.w.numpy() * step.u.numpy(), axis=-1) < -1.0) > 0.1
    along = tf.constant(np.linspace(-6, 6, 201, dtype=np.float32))[:, None, None] * step.w / tf.norm(step.w, axis=-1,
                                                                                                       keepdims=True)
    projected = tf.reduce_sum(step.forward(along) * step.w, axis=-1).numpy()  # [201, batch]
    assert np.all(np.diff(projected, axis=0) > 0)


def autodiff_log_det(f, z):
    """log |det df/dz| per row of z [n, L], from the Jacobian by automatic differentiation; and
    the Jacobian."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        y = f(z)
    jacobian = tape.batch_jacobian(y, z).numpy()
    return np.linalg.slogdet(jacobian)[1], jacobian


def test_an_iaf_step_is_autoregressive_and_its_log_det_is_that_of_its_jacobian(rng):
    latent, n = 5, 16
    made = MaskedAutoregressive([12, 12], "tanh")
    made.build([(None, latent), (None, 3)])
    for kernel in (made.kernels[-1], made.biases[-1]):  # the output layer starts at zero: make the step non-trivial
        kernel.assign(0.5 * rng.normal(size=kernel.shape).astype(np.float32))
    context = tf.constant(rng.normal(size=(n, 3)).astype(np.float32))
    step = tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=lambda z: made(z, context)))
    z = tf.constant(rng.normal(size=(n, latent)).astype(np.float32))
    log_det, jacobian = autodiff_log_det(step.forward, z)
    np.testing.assert_array_equal(np.triu(jacobian, k=1), 0.0)  # output i depends on z_j, j <= i, only
    assert np.all(np.abs(np.diagonal(jacobian, axis1=1, axis2=2) - 1.0) > 1e-3)  # ... and the step is not the identity
    np.testing.assert_allclose(step.forward_log_det_jacobian(z, event_ndims=1), log_det, atol=1e-4)
    np.testing.assert_allclose(step.inverse(tf.constant(step.forward(z).numpy())), z, atol=1e-4)


@pytest.mark.parametrize("kind", ["planar", "iaf"])
def test_a_flow_posteriors_log_q_is_its_base_density_less_the_flows_autodiff_log_det(rng, digits, kind):
    """log q(z_T|x) of a draw = log N(z_0; mu, sigma) - log |det df/dz_0|, the latter from the
    Jacobian of the whole flow by automatic differentiation (IAF: steps and reversals)."""
    params = Params.model_validate({**TINY, "model": {"latent_dim": 3, "hidden_units": [16],
                                                      "posterior": {"kind": kind, "num_steps": 3}}})
    model = build_model(params, digits.meta)
    posterior = model.posterior
    if kind == "iaf":
        for step in posterior.steps:
            step.kernels[-1].assign(0.3 * rng.normal(size=step.kernels[-1].shape).astype(np.float32))
    h = model.likelihood.network_input(digits.test[:4])
    base, flow = posterior.base_and_flow(h)
    z0 = base.sample(2, seed=[1, 2])  # [2, 4, 3]
    log_det, _ = autodiff_log_det(lambda z: tf.reshape(flow.forward(tf.reshape(z, [2, 4, 3])), [-1, 3]),
                                  tf.reshape(z0, [-1, 3]))
    z = flow.forward(z0)
    expected = base.log_prob(z0).numpy().ravel() - log_det
    fresh = tf.constant(z.numpy())  # not the tensor the forward pass made: the inverse is computed
    np.testing.assert_allclose(posterior.distribution(h).log_prob(fresh).numpy().ravel(), expected, atol=2e-3)


def random_iaf(rng, batch, latent):
    """Three IAF steps of small random MADEs (not the identity), a random context per example; an
    odd number of steps, so that the order reversals between them cancel."""
    steps = []
    for t in range(3):
        made = MaskedAutoregressive([8], "tanh")
        made.build([(None, latent), (None, 3)])
        for kernel in [*made.kernels, made.context_kernel]:  # seeded draws, not Keras'
            kernel.assign(0.1 * rng.normal(size=kernel.shape).astype(np.float32))
        steps.append(made)
    return autoregressive_chain(steps, latent, context=rng.normal(size=(batch, 3)).astype(np.float32), invert=True)


@pytest.mark.parametrize("kind", ["planar", "iaf"])
def test_importance_sampling_with_a_flow_proposal_recovers_the_exact_log_likelihood(rng, kind):
    """The flow's density (TFP's TransformedDistribution through `Planar` steps, or IAF steps)
    is right wherever the proposal reaches: an estimate with it is consistent. (A planar step
    with a tiny w is far from the identity, u_hat ~ m(0) w / |w|^2: steps of unit-scale w, modest u.)"""
    model = LinearGaussian(rng)
    x = (rng.normal(size=(20, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(20, 6))).astype(np.float32)
    base = model.proposal(shift=0.2, inflate=2.0)
    if kind == "planar":
        flow = tfb.Chain([Planar(0.3 * rng.normal(size=(20, 2)).astype(np.float32),
                                 rng.normal(size=(20, 2)).astype(np.float32), np.zeros(20, np.float32))
                          for _ in range(3)])
    else:
        flow = random_iaf(rng, 20, 2)
        z = base(x).sample(100, seed=[1, 2])
        assert np.mean(np.abs(flow.forward(z) - z)) > 0.05  # not the identity

    def proposal(x):
        return tfd.TransformedDistribution(base(x), flow)

    estimate = importance_sampling(x, proposal, model.likelihood, standard_normal(2), 5000, 1000, tf.constant([5, 6]))
    assert abs(np.mean(estimate["log_likelihood"].numpy() - model.exact_log_likelihood(x))) < 0.05


@pytest.mark.parametrize("kind", ["planar", "iaf"])
def test_flow_posteriors_train_and_refuse_dreg_naming_the_key(digits, tmp_path, monkeypatch, kind):
    planar = {**TINY, "model": {**TINY["model"], "posterior": {"kind": kind, "num_steps": 2}}}
    refusal = f"objective.gradient: dreg .* '{kind}' posterior .* set gradient: reparameterized"
    with pytest.raises(ValueError, match=refusal):  # when params are read (pydantic's ValidationError)
        Params.model_validate({**planar, "objective": {"kind": "iwae", "num_samples": 3}})
    from vae_tf.training import train

    monkeypatch.chdir(tmp_path)
    for objective in ({"kind": "elbo"}, {"kind": "iwae", "num_samples": 3, "gradient": "reparameterized"}):
        params = Params.model_validate({**planar, "objective": objective})
        history = train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
        bounds = history.history["val_bound"]
        assert len(bounds) == 3 and bounds[-1] > bounds[0], (objective, bounds)
