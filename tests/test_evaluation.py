"""Evaluation (vae_tf.evaluation): importance sampling against exact log-likelihoods, chunked or not,
and the ELBO surgery: its identity, known answers, blocks and memory."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vae_tf import evaluation
from vae_tf.evaluation import importance_sampling
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

from tests.conftest import LinearGaussian


def batch_of_gaussians(loc, scale):
    return tfd.Independent(tfd.Normal(tf.constant(loc, tf.float32), tf.constant(scale, tf.float32)), 1)


def test_importance_sampling_recovers_the_exact_log_likelihood_of_a_linear_gaussian(rng):
    model = LinearGaussian(rng)
    x = (rng.normal(size=(20, 2)) @ model.w.T + model.b + 0.5 * rng.normal(size=(20, 6))).astype(np.float32)
    exact = model.exact_log_likelihood(x)
    posterior = model.proposal(shift=0.2, inflate=1.3)
    estimate = importance_sampling(x, posterior, model.likelihood, standard_normal(2), 5000, 1000, tf.constant([5, 6]))
    assert abs(np.mean(estimate["log_likelihood"].numpy() - exact)) < 0.05
    assert np.max(np.abs(estimate["log_likelihood"].numpy() - exact)) < 0.2
    elbo = estimate["reconstruction"] - tfd.kl_divergence(posterior(x), standard_normal(2))
    assert np.all(elbo.numpy() < exact)  # a bound is not a log-likelihood: the gap is KL(q || p(z|x)) > 0
    assert np.mean(exact - elbo.numpy()) > 0.05


@pytest.mark.parametrize(("num_samples", "chunk_size"), [(1, 4), (7, 3), (12, 4), (5, 100)])
def test_exact_posterior_gives_exact_log_likelihood_for_any_k_and_chunking(rng, num_samples, chunk_size):
    """With the true posterior as proposal every importance weight equals p(x): no variance,
    so any K and any chunking (masked last chunk included) must return log p(x) itself."""
    model = LinearGaussian(rng, d=3, latent=2)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    estimate = importance_sampling(x, model.exact_posterior, model.likelihood, standard_normal(2),
                                   tf.constant(num_samples), chunk_size, tf.constant([1, 2]))
    np.testing.assert_allclose(estimate["log_likelihood"], model.exact_log_likelihood(x), atol=1e-4)


def test_elbo_surgery_splits_the_kl_term_into_information_and_the_hole(rng):
    """mean_n KL(q(z|x_n) || p) = I + KL(q(z) || p): against the closed-form KL term, within
    Monte Carlo error; I is at most log N."""
    n, latent = 50, 3
    q = batch_of_gaussians(rng.normal(size=(n, latent)), rng.uniform(0.3, 1.0, size=(n, latent)))
    surgery = evaluation.elbo_surgery(q, standard_normal(latent), 400, tf.constant([1, 2]))
    closed_form = float(tf.reduce_mean(tfd.kl_divergence(q, standard_normal(latent))))
    assert surgery["kl_term"] == pytest.approx(closed_form, abs=0.05)
    assert 0 < surgery["mutual_information"] <= np.log(n) and surgery["kl_aggregate_posterior_prior"] > 0


def test_elbo_surgery_identity_holds_on_a_trained_model(trained, digits):
    """The trained tiny VAE's posteriors over the test images: I + KL(q(z) || p(z)), estimated
    with 64 draws per image, equals the closed-form mean KL term within 2 %."""
    model, _ = trained
    q = model.proposal(tf.constant(digits.test), tf.constant([0, 0]), 20, 2.0).distribution  # a Gaussian q: itself
    prior = model.prior_distribution()
    surgery = evaluation.elbo_surgery(q, prior, 64, tf.constant([7, 8]))
    closed_form = float(tf.reduce_mean(tfd.kl_divergence(q, prior)))
    assert surgery["mutual_information"] + surgery["kl_aggregate_posterior_prior"] == pytest.approx(closed_form, rel=0.02)
    assert 0 < surgery["mutual_information"] <= np.log(len(digits.test))


def test_elbo_surgery_known_answers():
    """Every q(z|x_n) the prior (posterior collapse): no information, no hole. Codes far apart
    and sharp: each tells its example, I = log N."""
    collapsed = batch_of_gaussians(np.zeros((8, 2)), np.ones((8, 2)))
    surgery = evaluation.elbo_surgery(collapsed, standard_normal(2), 50, tf.constant([3, 4]))
    assert surgery["mutual_information"] == pytest.approx(0.0, abs=1e-5)
    assert surgery["kl_aggregate_posterior_prior"] == pytest.approx(0.0, abs=1e-5)
    separate = batch_of_gaussians(10.0 * np.arange(8)[:, None] * np.ones((8, 2)), 0.01 * np.ones((8, 2)))
    surgery = evaluation.elbo_surgery(separate, standard_normal(2), 50, tf.constant([5, 6]), chunk_size=64)
    assert surgery["mutual_information"] == pytest.approx(np.log(8), abs=1e-4)


def test_elbo_surgery_numbers_do_not_depend_on_its_blocks(rng):
    """The aggregate posterior is taken in blocks of draws, each against every example: any block
    size gives the same figures to the last bit (each draw's log-sum-exp runs over all N at once)."""
    q = batch_of_gaussians(rng.normal(size=(30, 4)), rng.uniform(0.3, 1.0, size=(30, 4)))
    prior = tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros(5)), batch_of_gaussians(rng.normal(size=(5, 4)),
                                                                                         np.ones((5, 4))))
    whole, blocks = (evaluation.elbo_surgery(q, prior, 8, tf.constant([1, 2]), chunk_size=size) for size in (None, 7))
    assert whole == blocks


def test_elbo_surgery_says_how_far_it_is(rng, monkeypatch, capsys):
    """A large surgery ran silent for minutes: a line every PROGRESS_SECONDS (here every block),
    and one when it is done."""
    monkeypatch.setattr(evaluation, "PROGRESS_SECONDS", -1)
    q = batch_of_gaussians(rng.normal(size=(10, 2)), np.ones((10, 2)))
    evaluation.elbo_surgery(q, standard_normal(2), 6, tf.constant([1, 2]), chunk_size=20)  # 60 draws: 3 blocks
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" in ")[0] for line in lines] == [f"ELBO surgery: {i}/3 blocks of draws" for i in (1, 2, 3)]
    assert lines[-1].endswith("about 0 s left")


def peak_growth_mib(script: str, *args) -> float:
    """What `script` prints last (the peak memory its measured call added, MiB), run with `args`
    in a process of its own from the repository root."""
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).parents[1])
    return float(out.stdout.split()[-1])


SURGERY_PEAK = """
import resource, sys
import numpy as np, tensorflow as tf
from vae_tf import evaluation
from vae_tf.tfp import tfd
n, components, latent = int(sys.argv[1]), int(sys.argv[2]), 8
rng = np.random.default_rng(0)
gaussians = lambda rows: tfd.Independent(tfd.Normal(rng.normal(size=(rows, latent)).astype(np.float32), 1.0), 1)
prior = tfd.MixtureSameFamily(tfd.Categorical(logits=tf.zeros(components)), gaussians(components))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
evaluation.elbo_surgery(gaussians(n), prior, 16, tf.constant([1, 2]))
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.slow
def test_elbo_surgery_memory_does_not_grow_with_examples_or_prior_components():
    """Peak memory of the surgery, each size in a process of its own: 8x the examples and 8x a
    mixture prior's components add less than 150 MiB (measured: under 10 MiB; before the surgery
    took its blocks, they added 1.9 and 1.7 GiB: q's [512, N, L] and the prior's [S N, C, L])."""
    def peak(n, components):
        return peak_growth_mib(SURGERY_PEAK, n, components)

    small, more_examples, more_components = peak(500, 500), peak(4000, 500), peak(500, 4000)
    assert more_examples - small < 150 and more_components - small < 150, (small, more_examples, more_components)


def test_the_surgery_posterior_is_made_batch_by_batch_and_is_q_for_a_gaussian(trained, tiny_params, digits):
    """`posterior_of` concatenates per-batch q(z|x): for a Gaussian posterior its log-density is
    that of q over all the images at once (the encoder's rows do not interact)."""
    model, _ = trained
    x = digits.test[:50]
    whole, description = evaluation.posterior_of(model, x, tiny_params.evaluation.model_copy(update={"batch_size": 16}),
                                                 tf.constant([1, 2]))
    q = model.proposal(tf.constant(x), None, 2, 1.0).distribution
    z = q.sample(3, seed=[3, 4])
    assert whole.batch_shape == [50] and description == "q(z|x)"
    np.testing.assert_allclose(whole.log_prob(z), q.log_prob(z), rtol=1e-5)


GROWTH_PEAK = """
import resource, sys
import numpy as np, tensorflow as tf
from vae_tf import evaluation
from vae_tf.config import Params
from tests.conftest import meta_for, model_of
what, size = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
if what == "kl":  # KL per dimension against the marginals of a mixture of `size` components
    batch, latent = 32, 16
    logits, locs = tf.zeros([latent, size]), tf.constant(rng.normal(size=(latent, size)), tf.float32)
    marginals = evaluation.tfd.MixtureSameFamily(evaluation.tfd.Categorical(logits=logits),
                                                 evaluation.tfd.Normal(locs, 1.0))
    run = lambda: tf.function(evaluation.kl_per_dimension, jit_compile=True)(
        tf.zeros([batch, latent]), tf.ones([batch, latent]), marginals, tf.constant([1, 2]))
else:  # the surgery's posterior over `size` images, an implicit q fitted to 1000 draws each
    model = model_of({"model": {"latent_dim": 8, "hidden_units": [256], "posterior": {"kind": "implicit"},
                                "likelihood": "gaussian"}, "objective": {"kind": "avb"}}, meta_for(64))
    x = rng.uniform(size=(size, 64)).astype(np.float32)
    run = lambda: evaluation.posterior_of(model, x, Params().evaluation.model_copy(update={"batch_size": 64}),
                                          tf.constant([1, 2]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.slow
def test_kl_per_dimension_and_the_surgery_posterior_hold_memory_bounded_in_their_sizes():
    """Peak memory, each size in a process of its own: 16x a mixture's components in the KL per
    dimension, and 8x the images of the surgery's posterior (an implicit q, 1000 draws an image),
    add less than 100 MiB (measured: 3.5 and 0.1 MiB; before they were taken a draw, and a batch,
    at a time: 506 MiB and 2.5 GiB)."""
    kl_growth = peak_growth_mib(GROWTH_PEAK, "kl", 1024) - peak_growth_mib(GROWTH_PEAK, "kl", 64)
    surgery_growth = peak_growth_mib(GROWTH_PEAK, "surgery", 1024) - peak_growth_mib(GROWTH_PEAK, "surgery", 128)
    assert kl_growth < 100 and surgery_growth < 100, (kl_growth, surgery_growth)
