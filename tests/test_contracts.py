"""Contract tests over the registries, in TensorFlow Probability's style: every registered
posterior, prior and likelihood kind (the example kinds of `example_parts.py` too) is checked
for its shapes, a density consistent with its samples (where it has one), a `.keras` round trip
and agreement of the exported signatures with the model, with every network kind
(`model.network`, with plain and gated dense layers); every objective trains every variable with every network kind. A new kind
gets them by registering."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_tf.evaluation import model_log_likelihood
from vae_tf.export import ENCODE_SEED, export_model
from vae_tf.config.networks import KINDS as NETWORKS
from vae_tf.likelihoods import LIKELIHOODS
from vae_tf.objectives import OBJECTIVES
from vae_tf.posteriors import POSTERIORS
from vae_tf.priors import PRIORS
from vae_tf.registry import Context
from vae_tf.tfp import tfd

from tests.conftest import meta_for, model_of

LATENT, BATCH, K = 2, 5, 3
# Data of each representation a likelihood may model: D pixels (2, so that discrete data can be
# enumerated) and the levels of each.
DATA = {"levels": (2, 3), "binary": (2, 2), "continuous": (2, None)}
# Each network kind, and the shape its D = 2 values have: rows for mlp, images (one of 1 x 2
# grey pixels, one of a 1 x 1 pixel with two channels) for those that see images.
NETWORK_DATA = {"mlp": ({"kind": "mlp"}, (2,)), "gated": ({"kind": "mlp", "gated": True}, (2,)),
                "conv": ({"kind": "conv", "filters": [3, 4]}, (1, 2, 1)),
                "resnet": ({"kind": "resnet", "filters": [3], "blocks": 1}, (1, 1, 2))}
assert {architecture["kind"] for architecture, _ in NETWORK_DATA.values()} == set(NETWORKS.classes)
# Priors see no network but those made of the posterior (the VampPrior): those meet every kind.
PRIOR_CASES = [(kind, network) for kind, cls in sorted(PRIORS.classes.items())
               for network in (sorted(NETWORK_DATA) if cls.params_class.uses_posterior else ["mlp"])]


def model_with(part: str, kind: str, network: str = "mlp", jit_compile: bool = False):
    """A tiny model whose `part` is `kind`, the other parts at their defaults, trained by an
    objective that suits the posterior, on data the likelihood models, its networks of kind
    `network` (its train step compiled by XLA with `jit_compile`)."""
    posterior = POSTERIORS.classes[kind] if part == "posterior" else POSTERIORS.classes["gaussian"]
    objective = kind if part == "objective" else next(
        name for name, cls in OBJECTIVES.classes.items() if posterior.params_class.density or not cls.params_class.needs_density)
    likelihood = LIKELIHOODS.classes[kind] if part == "likelihood" else LIKELIHOODS.classes["gaussian"]
    dimension, levels = DATA[likelihood.representation]
    architecture, image_shape = NETWORK_DATA[network]
    params = {"model": {"latent_dim": LATENT, "hidden_units": [8], "network": architecture,
                        "posterior": posterior.kind, "likelihood": likelihood.kind,
                        **({part: kind} if part == "prior" else {})},
              "objective": {"kind": objective}, "training": {"jit_compile": jit_compile}}
    return model_of(params, meta_for(dimension, likelihood.representation, levels, image_shape))


PARTS = {"posterior": POSTERIORS, "prior": PRIORS, "likelihood": LIKELIHOODS, "objective": OBJECTIVES}


@pytest.mark.parametrize(("part", "kind"), [(part, kind) for part, registry in PARTS.items()
                                            for kind in sorted(registry.classes)])
def test_a_kinds_config_is_its_params_and_the_shared_settings(part, kind):
    """`from_params` and `get_config` are derived from the params class (`vae_tf.registry.Part`):
    a layer built from its kind's params holds each of their fields, and each shared setting it
    takes, in its config, and `from_config` rebuilds the same config; its `params` are the params
    it was built from (what the params class derives, such as an objective's draws per example,
    is read from them)."""
    cls = PARTS[part].classes[kind]
    dimension, levels = DATA[cls.representation] if part == "likelihood" else DATA["continuous"]
    representation = cls.representation if part == "likelihood" else "continuous"
    context = Context(meta_for(dimension, representation, levels), LATENT, (8, 6), "tanh")
    params = cls.params_class()
    layer = PARTS[part].build(params, context)
    assert layer.params == params
    config = layer.get_config()
    assert {name: config[name] for name in params.setting_names()} == params.settings()
    shared = {"hidden_units": [8, 6], "latent_dim": LATENT, "activation": "tanh", "architecture": None,
              "data_dim": dimension, "n_levels": levels}
    assert {name: config[name] for name in cls.context_fields} == {name: shared[name] for name in cls.context_fields}
    assert config["name"] == part and cls.from_config(config).get_config() == config


def data_for(model, seed=0):
    """x [BATCH, D] the model's likelihood is a density for: its own draws."""
    z = tf.random.stateless_normal([BATCH, LATENT], seed=[seed, 1])
    return model.likelihood.distribution(z).sample(seed=[seed, 2])


def check_density_matches_samples(samples: np.ndarray, log_prob, seed: int) -> None:
    """Samples [n, d] and a log-density of one d-dimensional distribution agree: importance
    weights q / r under a wider Gaussian r average to one (the density is normalised), and
    reweight r's draws to the samples' mean and second moments (it is the samples' density)."""
    mean, sd = samples.mean(0), samples.std(0)
    r = tfd.Independent(tfd.Normal(mean.astype(np.float32), 2 * sd.astype(np.float32)), 1)
    y = r.sample(200_000, seed=[seed, 3])
    w = np.exp(log_prob(y).numpy() - r.log_prob(y).numpy())
    assert abs(w.mean() - 1) < 4 * w.std() / np.sqrt(len(w)) + 0.01, w.mean()
    y, w = y.numpy(), w / w.sum()
    np.testing.assert_allclose(w @ y, mean, atol=0.05 * sd.max() + 4 * sd.max() / np.sqrt(len(samples)))
    np.testing.assert_allclose(w @ (y**2), (samples**2).mean(0), rtol=0.05, atol=0.05 * sd.max() ** 2)


def check_reciprocal_density_is_unbiased(draw) -> None:
    """A log q(z|x) estimate at draws z ~ q of one example (a "bound" kind's) whose exp is the
    reciprocal of an unbiased estimate of 1/q: r(z)/q^(z) averages to int r = 1 for any density r
    (here a Gaussian half as wide as the draws, so that the ratio has a variance)."""
    z = draw.z.numpy()[:, 0]
    r = tfd.Independent(tfd.Normal(z.mean(0), 0.5 * z.std(0)), 1)
    ratio = np.exp(r.log_prob(z).numpy() - draw.log_q.numpy()[:, 0])
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / np.sqrt(len(ratio)) + 0.01, ratio.mean()


def assert_round_trip(model, tmp_path, check):
    """`check(model)` gives the same numbers for the model and for it saved and loaded."""
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_config() == model.get_config()
    for a, b in zip(check(model), check(loaded)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def exported(model, tmp_path):
    export_model(model, tmp_path / "1", chunk_size=4, proposal_samples=20, proposal_scale=2.0)
    return tf.saved_model.load(str(tmp_path / "1")).signatures


# --- posteriors ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(POSTERIORS.classes))
def test_a_posterior_is_refined_and_takes_dreg_if_and_only_if_its_params_say_so(kind):
    """`draw` with a refinement that changes nothing is `draw` for a kind whose params declare
    `gaussian_proposal`, any other kind refuses it; likewise DReG's form (`supports_dreg`)."""
    model = model_with("posterior", kind)
    posterior, h = model.posterior, model.likelihood.network_input(data_for(model))
    seed = tf.constant([1, 2])
    if posterior.params_class.gaussian_proposal:
        refined, draw = posterior.draw(h, K, seed, refine=lambda q: q), posterior.draw(h, K, seed)
        np.testing.assert_array_equal(refined.z, draw.z)
        np.testing.assert_array_equal(refined.log_q, draw.log_q)
    else:
        with pytest.raises(NotImplementedError, match="cannot be refined"):
            posterior.draw(h, K, seed, refine=lambda q: q)
    if not posterior.params_class.supports_dreg:
        with pytest.raises(NotImplementedError, match="has no DReG form"):
            posterior.draw(h, K, seed, stop_density_gradient=True)


def test_the_posterior_contract_is_six_members():
    """What a posterior is to the rest of the system (`docs/parts.md`): six public members, the
    rest of `Posterior` private or the Keras layer's."""
    from vae_tf.posteriors.base import Posterior
    from vae_tf.registry import Part

    every_parts = {*vars(Part), *Part.__annotations__}  # role, context_fields, from_params, get_config, ...
    own = {name for name in vars(Posterior) if not name.startswith("_")} - every_parts
    assert own == {"draw", "distribution", "moments", "proposal", "encode", "density"}


@pytest.mark.parametrize("network", sorted(NETWORK_DATA))
@pytest.mark.parametrize("kind", sorted(POSTERIORS.classes))
def test_posterior_shapes_and_density(kind, network):
    model = model_with("posterior", kind, network)
    posterior = model.posterior
    assert posterior.role == "inference"
    h = model.likelihood.network_input(data_for(model))
    draw = posterior.draw(h, K, tf.constant([1, 2]))
    assert draw.z.shape == (K, BATCH, LATENT)
    assert (draw.log_q is None) == (posterior.density is None)
    np.testing.assert_array_equal(posterior.draw(h, K, tf.constant([1, 2])).z, draw.z)  # seeded
    mean, scale = posterior.moments(h, tf.constant([3, 4]))
    assert mean.shape == scale.shape == (BATCH, LATENT) and np.all(scale.numpy() > 0)
    offer = model.proposal(data_for(model), tf.constant([5, 6]), 50, 2.0)
    proposal, anywhere = offer.distribution, offer.anywhere()[0]
    assert anywhere.batch_shape == [BATCH] and np.all(np.isfinite(anywhere.log_prob(tf.zeros([BATCH, LATENT]))))
    assert [m.shape for m in offer.moments(tf.constant([3, 4]))] == [(BATCH, LATENT)] * 2
    assert proposal.batch_shape == [BATCH] and proposal.event_shape == [LATENT]
    assert np.all(np.isfinite(proposal.experimental_sample_and_log_prob(4, seed=[7, 8])[1].numpy()))
    one = h[:1]
    if posterior.density == "exact":
        assert draw.log_q.shape == (K, BATCH)
        np.testing.assert_allclose(draw.log_q, posterior.distribution(h).log_prob(draw.z), rtol=1e-5)
        samples = posterior.draw(one, 20_000, tf.constant([9, 9])).z.numpy()[:, 0]
        check_density_matches_samples(samples, lambda z: posterior.distribution(one).log_prob(z[:, None])[:, 0], 1)
    elif posterior.density == "bound":
        check_reciprocal_density_is_unbiased(posterior.draw(one, 20_000, tf.constant([9, 9])))
    else:  # samples only: its moments are those of its samples (within 4 standard errors, 5 % in scale)
        samples = posterior.draw(one, 20_000, tf.constant([9, 9])).z.numpy()[:, 0]
        mean, scale = (m.numpy()[0] for m in posterior.moments(one, tf.constant([3, 4])))
        np.testing.assert_allclose(mean, samples.mean(0), atol=4 * samples.std(0).max() / np.sqrt(len(samples))
                                   + 4 * scale.max() / np.sqrt(posterior.moment_samples))
        np.testing.assert_allclose(scale, samples.std(0), rtol=0.05 + 4 / np.sqrt(posterior.moment_samples))


@pytest.mark.slow
@pytest.mark.parametrize("network", sorted(NETWORK_DATA))
@pytest.mark.parametrize("kind", sorted(POSTERIORS.classes))
def test_posterior_round_trips_and_exports(kind, network, tmp_path):
    model = model_with("posterior", kind, network)
    x = data_for(model)
    h = model.likelihood.network_input(x)
    assert_round_trip(model, tmp_path, lambda m: [m.posterior.draw(h, K, tf.constant([1, 2])).z,
                                                  *m.posterior.moments(h, tf.constant([3, 4])), m(x)])
    signatures = exported(model, tmp_path)
    encoded = signatures["encode"](x=x)
    for name, value in model.encode(x, tf.constant(ENCODE_SEED)).items():
        np.testing.assert_allclose(encoded[name], value, rtol=1e-5, atol=1e-6)
    served = signatures["log_likelihood"](x=x, num_samples=tf.constant(10), seed=tf.constant(3))["log_likelihood"]
    np.testing.assert_allclose(served, model_log_likelihood(model, x, 10, 4, 20, 2.0, tf.constant([3, 0])), rtol=1e-5)


# --- priors ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "network"), PRIOR_CASES)
def test_prior_shapes_and_density(kind, network):
    model = model_with("prior", kind, network)
    assert model.prior.role == "generative"
    prior = model.prior_distribution()
    assert prior.event_shape == [LATENT] and prior.batch_shape == []
    z = prior.sample([K, BATCH], seed=[1, 2])
    assert z.shape == (K, BATCH, LATENT) and prior.log_prob(z).shape == (K, BATCH)
    check_density_matches_samples(prior.sample(20_000, seed=[3, 4]).numpy(), prior.log_prob, 2)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "network"), PRIOR_CASES)
def test_prior_round_trips_and_exports(kind, network, tmp_path):
    model = model_with("prior", kind, network)
    z = tf.random.stateless_normal([BATCH, LATENT], seed=[1, 1])
    assert_round_trip(model, tmp_path, lambda m: [m.prior_distribution().log_prob(z),
                                                  m.prior_distribution().sample(3, seed=[2, 2])])
    drawn = exported(model, tmp_path)["sample"](num_samples=tf.constant(4), seed=tf.constant(5))
    prior_seed, _ = tf.unstack(tf.random.experimental.stateless_split([5, 0], 2))
    expected = model.likelihood.distribution(model.prior_distribution().sample(4, seed=prior_seed)).mean()
    np.testing.assert_allclose(drawn["mean"], expected, rtol=1e-5, atol=1e-6)


# --- likelihoods -----------------------------------------------------------------------


@pytest.mark.parametrize("network", sorted(NETWORK_DATA))
@pytest.mark.parametrize("kind", sorted(LIKELIHOODS.classes))
def test_likelihood_shapes_density_and_check(kind, network):
    model = model_with("likelihood", kind, network)
    likelihood = model.likelihood
    assert likelihood.role == "generative"
    dimension, levels = DATA[likelihood.representation]
    p = likelihood.distribution(tf.random.stateless_normal([K, BATCH, LATENT], seed=[1, 1]))
    assert p.batch_shape == [K, BATCH] and p.event_shape == [dimension]
    one = likelihood.distribution(tf.constant([[0.3, -0.2]]))  # batch 1
    x = one.sample(20_000, seed=[2, 2]).numpy()[:, 0]  # [n, D]
    assert np.all(likelihood.check(x).numpy() == x)  # its own draws are data it is a density for
    h = np.asarray(likelihood.network_input(x))
    assert h.min() >= 0 and h.max() <= 1 or likelihood.representation == "continuous"
    if likelihood.representation == "continuous":
        check_density_matches_samples(x, lambda y: one.log_prob(y[:, None])[:, 0], 3)
        return
    # discrete: the probabilities of every possible x sum to one and match the draws' frequencies
    outcomes = np.array(list(itertools.product(range(levels), repeat=dimension)), np.float32)
    probabilities = np.exp(one.log_prob(outcomes[:, None]).numpy()[:, 0])
    np.testing.assert_allclose(probabilities.sum(), 1.0, rtol=1e-5)
    frequencies = np.array([np.mean(np.all(x == outcome, axis=1)) for outcome in outcomes])
    np.testing.assert_allclose(frequencies, probabilities, atol=4 * np.sqrt(0.25 / len(x)))
    bad = np.array(x[:2])
    bad[0, 0] = levels  # a level it gives no mass
    with pytest.raises(tf.errors.InvalidArgumentError, match="x: values must be"):
        likelihood.check(tf.constant(bad))


@pytest.mark.slow
@pytest.mark.parametrize("network", sorted(NETWORK_DATA))
@pytest.mark.parametrize("kind", sorted(LIKELIHOODS.classes))
def test_likelihood_round_trips_and_exports(kind, network, tmp_path):
    model = model_with("likelihood", kind, network)
    x, z = data_for(model), tf.random.stateless_normal([BATCH, LATENT], seed=[1, 1])
    assert_round_trip(model, tmp_path, lambda m: [m.likelihood.distribution(z).log_prob(x), m(x)])
    signatures = exported(model, tmp_path)
    decoded = signatures["decode"](z=z)
    np.testing.assert_allclose(decoded["mean"], model.likelihood.distribution(z).mean(), rtol=1e-5, atol=1e-6)
    for name, value in model.likelihood.parameters(z).items():
        np.testing.assert_allclose(decoded[name], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(signatures["reconstruct"](x=x)["mean"], model(x), rtol=1e-5, atol=1e-6)


# --- objectives ------------------------------------------------------------------------


# every network eagerly, and the MLP under XLA, as training runs it by default (on a machine
# without a GPU, image networks train without XLA: `vae_tf.models.uses_xla`)
@pytest.mark.parametrize(("network", "jit_compile"), [*((network, False) for network in sorted(NETWORK_DATA)),
                                                      ("mlp", True)])
@pytest.mark.parametrize("kind", sorted(OBJECTIVES.classes))
def test_objective_trains_every_variable(kind, network, jit_compile):
    """Two minibatch updates by the objective (with its own adversary where it has one) give
    finite metrics and move every trainable variable: no network is cut off from its gradient."""
    model = model_with("objective", kind, network, jit_compile)
    before = [v.numpy() for v in model.trainable_variables]
    x = tf.concat([data_for(model, seed) for seed in range(2)], axis=0)
    history = model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).history
    assert all(np.isfinite(values[-1]) for values in history.values()), history
    unmoved = [v.path for v, old in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), old)]
    assert not unmoved, unmoved


# --- every contract under XLA, as training and evaluation run it by default ---------------


def compiled(fn, *args):
    """`fn(*args)` inside `tf.function(jit_compile=True)`."""
    return tf.function(fn, jit_compile=True)(*args)


@pytest.mark.parametrize("kind", sorted(POSTERIORS.classes))
def test_posterior_contract_under_xla(kind):
    """Compiled, a posterior's draws are finite and of their shapes, log q at them is its density's
    (an exact kind's) or finite (a bound), and its moments and proposal are finite."""
    model = model_with("posterior", kind)
    posterior, x = model.posterior, data_for(model)

    def contract(x):
        h = model.likelihood.network_input(x)
        draw = posterior.draw(h, K, tf.constant([1, 2]))
        exact = posterior.distribution(h).log_prob(draw.z) if posterior.density == "exact" else draw.z[..., 0]
        mean, scale = posterior.moments(h, tf.constant([3, 4]))
        _, log_r = model.proposal(x, tf.constant([5, 6]), 50, 2.0).distribution.experimental_sample_and_log_prob(
            4, seed=[7, 8])
        return draw.z, draw.log_q if draw.log_q is not None else draw.z[..., 0], exact, mean, scale, log_r

    z, log_q, exact, mean, scale, log_r = (value.numpy() for value in compiled(contract, x))
    assert z.shape == (K, BATCH, LATENT) and np.all(np.isfinite(z)) and np.all(np.isfinite(log_q))
    if posterior.density == "exact":
        np.testing.assert_allclose(log_q, exact, rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(mean)) and np.all(scale > 0) and np.all(np.isfinite(log_r))


@pytest.mark.parametrize(("kind", "network"), [case for case in PRIOR_CASES if case[1] == "mlp"])
def test_prior_contract_under_xla(kind, network):
    """Compiled, a prior's log-density is the eager one's at the same z, and its draws are finite."""
    model = model_with("prior", kind, network)
    z = tf.random.stateless_normal([K, BATCH, LATENT], seed=[1, 2])
    log_p, drawn = compiled(lambda z: (model.prior_distribution().log_prob(z),
                                       model.prior_distribution().sample(5, seed=[3, 4])), z)
    np.testing.assert_allclose(log_p, model.prior_distribution().log_prob(z), rtol=1e-5, atol=1e-5)
    assert drawn.shape == (5, LATENT) and np.all(np.isfinite(drawn.numpy()))


@pytest.mark.parametrize("kind", sorted(LIKELIHOODS.classes))
def test_likelihood_contract_under_xla(kind):
    """Compiled, a likelihood's log-density of x and its mean are the eager ones."""
    model = model_with("likelihood", kind)
    x, z = data_for(model), tf.random.stateless_normal([K, BATCH, LATENT], seed=[1, 1])
    log_px, mean = compiled(lambda x, z: (model.likelihood.distribution(z).log_prob(model.likelihood.check(x)),
                                          model.likelihood.distribution(z).mean()), x, z)
    np.testing.assert_allclose(log_px, model.likelihood.distribution(z).log_prob(x), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(mean, model.likelihood.distribution(z).mean(), rtol=1e-5, atol=1e-6)
