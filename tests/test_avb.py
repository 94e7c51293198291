"""AVB and the implicit posteriors: the density-ratio trick on a known answer, the samplers, the
evaluation of an implicit q, the game's steps and a short run (AIS: test_ais.py; the fitted
proposal: test_fitted.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae_tf.objectives import bounds
from vae_tf.config import Params
from vae_tf.objectives import Discriminator
from vae_tf.posteriors import fitted_gaussian, sample_moments
from vae_tf.posteriors.implicit import NoiseBasisPosterior
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

from tests.conftest import TINY, model_of


def test_discriminator_learns_the_log_density_ratio_of_two_known_gaussians():
    """q = N(mu, sigma^2) per dimension, p = N(0, 1): the logistic loss is minimised by
    T*(z) = log q(z) - log p(z), a quadratic in z, and E_q[T*] = KL(q || p) (Mescheder et al. 2017,
    Prop. 1). T is our Discriminator (with an empty x), trained on fresh samples at every step."""
    keras.utils.set_random_seed(0)
    mu, sigma = np.array([1.0, -0.5], np.float32), np.array([0.5, 1.5], np.float32)
    q = tfd.Independent(tfd.Normal(mu, sigma), 1)
    p = standard_normal(2)
    discriminator = Discriminator([64, 64], "elu")
    discriminator.build((None, 2))
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, 3000))
    no_x = tf.zeros([1024, 0])

    @tf.function
    def step(seed):
        seeds = tf.random.experimental.stateless_split(seed, 2)
        z_q, z_p = q.sample(1024, seed=seeds[0]), p.sample(1024, seed=seeds[1])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(bounds.discriminator_loss(discriminator(no_x, z_q), discriminator(no_x, z_p)))
        gradients = tape.gradient(loss, discriminator.trainable_variables)
        optimizer.apply_gradients(zip(gradients, discriminator.trainable_variables))

    for i in range(3000):
        step(tf.constant([i, 0]))
    z = q.sample(20000, seed=[7, 7])
    t = discriminator(tf.zeros([20000, 0]), z).numpy()
    true_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()
    kl = float(tfd.kl_divergence(q, p))  # log(1/sigma) + (sigma^2 + mu^2 - 1) / 2, summed: 1.16 nats
    assert kl == pytest.approx(np.sum(-np.log(sigma) + (sigma**2 + mu**2 - 1) / 2))
    # on samples of q, where the ratio itself spreads over several nats (sd ~1.3): RMSE 0.15 measured
    mse = np.mean((t - true_ratio) ** 2)
    assert np.sqrt(mse) < 0.2 and mse < 0.05 * np.var(true_ratio)
    assert np.mean(t) == pytest.approx(kl, abs=0.05)  # 1.158 measured


def small_avb(digits, adaptive_contrast=True, kl_warmup_epochs=0):
    params = {"model": {"latent_dim": 3, "hidden_units": [16], "posterior": {"kind": "implicit", "noise_dim": 4,
                                                                            "moment_samples": 200}},
              "objective": {"kind": "avb", "discriminator_units": [16], "adaptive_contrast": adaptive_contrast,
                            "discriminator_learning_rate": 3e-3, "kl_warmup_epochs": kl_warmup_epochs},
              "training": {"optimizer": "adam", "learning_rate": 1e-3}}
    return model_of(params, digits.meta)


def test_implicit_posterior_feeds_noise_into_every_layer_and_is_seeded(digits):
    posterior = small_avb(digits).posterior
    widths = [64, 16]
    assert [layer.kernel.shape[0] for layer in [*posterior.hidden, posterior.output_layer]] == [w + 4 for w in widths]
    h = tf.constant(digits.test[:5] / 16)
    z = posterior.draw(h, 7, tf.constant([1, 2])).z
    assert z.shape == (7, 5, 3) and np.all(np.std(z.numpy(), axis=0) > 0)  # the noise matters
    np.testing.assert_array_equal(z, posterior.draw(h, 7, tf.constant([1, 2])).z)
    assert posterior.draw(h, 7, tf.constant([1, 2])).log_q is None  # no density
    # the noise reaches the first layer: with the later layers' noise weights zeroed, z still varies
    for layer in [*posterior.hidden[1:], posterior.output_layer]:
        kernel = layer.kernel.numpy()
        kernel[-4:] = 0.0
        layer.kernel.assign(kernel)
    assert np.all(np.std(posterior.draw(h, 7, tf.constant([1, 2])).z.numpy(), axis=0) > 0)


def test_noise_basis_moments_are_those_of_its_draws_and_each_basis_sees_its_own_noise(rng):
    """z = z0(x) + sum_i a_i(x) v_i(eps_i): E[z|x] = z0 + sum_i a_i E[v_i], Var[z|x] = sum_i a_i^2
    Var[v_i], here with a_i near 1 (the head's bias raised), against 100,000 draws."""
    posterior = NoiseBasisPosterior(latent_dim=3, hidden_units=(8,), activation="leaky_relu", noise_dim=4,
                                    num_basis=5, basis_units=(16, 16), moment_samples=20000, name="posterior")
    posterior.build((None, 6))
    kernel, bias = posterior.network.layers[-1].get_weights()
    posterior.network.layers[-1].set_weights([kernel, np.concatenate([bias[:3], bias[3:] + 6.0])])
    h = tf.constant(rng.normal(size=(4, 6)), tf.float32)
    mean, scale = posterior.moments(h, tf.constant([1, 2]))
    z = posterior.draw(h, 100_000, tf.constant([3, 4])).z.numpy()
    assert z.shape == (100_000, 4, 3) and posterior.draw(h, 2, tf.constant([3, 4])).log_q is None
    np.testing.assert_allclose(mean, z.mean(0), atol=4 * z.std(0).max() / np.sqrt(20000))
    np.testing.assert_allclose(scale, z.std(0), rtol=0.03)
    eps = rng.normal(size=(7, 5, 4)).astype(np.float32)  # basis network i sees eps[:, i] only
    changed = eps.copy()
    changed[:, 2] += 1.0
    difference = np.abs(posterior.basis(changed) - posterior.basis(eps)).max(axis=(0, 2))
    assert difference[2] > 0 and np.all(np.delete(difference, 2) == 0)


def test_evaluation_takes_an_implicit_qs_moments_from_the_proposals_draws(digits):
    """One set of draws per batch: the proposal fitted to them, and q's mean and scale from them."""
    posterior = small_avb(digits).posterior
    h, seed = tf.constant(digits.test[:5] / 16), tf.constant([3, 4])
    offer = posterior.proposal(h, seed, 1000, 2.0)
    proposal, (mean, scale) = offer.distribution, offer.moments(tf.constant([5, 6]))  # that seed unused
    expected_mean, expected_scale = sample_moments(posterior.draw(h, 1000, seed).z)
    np.testing.assert_array_equal(mean, expected_mean)
    np.testing.assert_array_equal(scale, expected_scale)
    z = posterior.draw(h, 3, tf.constant([7, 8])).z
    np.testing.assert_array_equal(proposal.log_prob(z), fitted_gaussian(posterior.draw(h, 1000, seed).z, 2.0).log_prob(z))
    assert offer.anywhere() == (proposal, "Gaussian fitted to 1000 draws of q(z|x), scale x2")
    # and they estimate q's moments: within 5 standard errors of 20000 draws' moments
    many_mean, many_scale = sample_moments(posterior.draw(h, 20000, tf.constant([9, 9])).z)
    assert np.all(np.abs(mean - many_mean) < 5 * many_scale / np.sqrt(1000))
    np.testing.assert_allclose(scale, many_scale, rtol=0.15)


def test_adaptive_contrast_standardizes_posterior_draws_and_plain_avb_contrasts_with_the_prior(digits):
    """With r(z|x) the Gaussian of q's moments (from 200 draws) and s(z) = (z - m) / s, fresh draws
    of q map to zero mean and unit variance, up to the error of those moments (a mean's standard
    error is 1/sqrt(200) = 0.07); without, r = p(z) and s is the identity."""
    model = small_avb(digits, adaptive_contrast=True)
    h = model.likelihood.network_input(tf.constant(digits.test[:4]))
    reference = model.objective.reference(model, h)
    z = model.posterior.draw(h, 4000, tf.constant([5, 5])).z
    standard = reference.standardize(z).numpy()
    np.testing.assert_allclose(standard.mean(axis=0), 0.0, atol=0.25)
    np.testing.assert_allclose(standard.std(axis=0), 1.0, atol=0.15)
    assert reference.distribution.batch_shape == [4] and reference.distribution.event_shape == [3]
    r_draws = reference.sample(4000, tf.constant([6, 6])).numpy()  # r's sampler draws r
    np.testing.assert_allclose(np.std(reference.standardize(r_draws), axis=0), 1.0, atol=0.05)
    plain_model = small_avb(digits, adaptive_contrast=False)
    plain = plain_model.objective.reference(plain_model, h)
    assert plain.standardize(z) is z and plain.distribution.batch_shape == [4]
    np.testing.assert_allclose(plain.distribution.log_prob(z), standard_normal(3).log_prob(z), rtol=1e-6)
    np.testing.assert_allclose(plain.sample(4000, tf.constant([7, 7])).numpy().std(axis=(0, 1)), 1.0, atol=0.03)


def test_the_kl_warmup_weights_avbs_estimated_kl_and_the_bound_stays_the_elbo(digits):
    """In the warm-up's first of 4 epochs (beta = 1/4) the encoder and decoder climb
    reconstruction - KL~ / 4 on the same draws, while the bound they report (and early stopping
    watches) stays reconstruction - KL~; without a warm-up AVB holds no beta (older models load)."""
    model = small_avb(digits, kl_warmup_epochs=4)
    (warmup,) = model.objective.callbacks()
    warmup.on_epoch_begin(0)
    x, weights = tf.constant(digits.train[:8]), tf.ones([8])
    reference = model.objective.reference(model, model.likelihood.network_input(x))
    loss, means, _ = model.objective.model_terms(model, x, weights, reference)
    assert float(model.objective.beta) == 0.25 and model.objective.warmup_epochs == 4
    assert float(means["kl"]) != 0.0
    np.testing.assert_allclose(-float(loss), float(means["reconstruction"] - 0.25 * means["kl"]), rtol=1e-5)
    np.testing.assert_allclose(float(means["bound"]), float(means["reconstruction"] - means["kl"]), rtol=1e-5)
    assert not hasattr(small_avb(digits).objective, "beta")


def test_avb_save_and_load_round_trip_keeps_both_optimizers_and_samples(tmp_path, digits):
    model = small_avb(digits)
    model.fit(digits.train[:128], batch_size=64, epochs=1, verbose=0)
    model.save(tmp_path / "avb.keras")
    loaded = keras.models.load_model(tmp_path / "avb.keras")
    x = tf.constant(digits.test[:6])
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5)
    h = model.likelihood.network_input(x)
    np.testing.assert_allclose(loaded.posterior.draw(h, 3, tf.constant([1, 1])).z,
                               model.posterior.draw(h, 3, tf.constant([1, 1])).z, rtol=1e-5)
    assert float(loaded.adversary_optimizer.learning_rate) == pytest.approx(3e-3)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.adversary_optimizer.variables,
                                                    model.adversary_optimizer.variables))


@pytest.mark.parametrize("adaptive_contrast", [True, False])
def test_each_step_of_the_game_moves_only_its_own_players_variables(digits, adaptive_contrast):
    """The discriminator step moves every adversary variable and nothing else; the model step
    moves every inference and generative variable and no adversary one, though its loss depends
    on T (T's gradient is there, only the variable lists keep it fixed)."""
    model = small_avb(digits, adaptive_contrast)
    objective, x, weights = model.objective, tf.constant(digits.train[:64]), tf.ones([64])

    def changed_by(step):
        before = {v.path: v.numpy().copy() for v in model.trainable_variables}
        step()
        return {v.path for v in model.trainable_variables if not np.array_equal(before[v.path], v.numpy())}

    paths = {role: {v.path for v in model.variables_by_role(role)} for role in ("inference", "generative", "adversary")}
    assert all(paths.values())
    reference = objective.reference(model, model.likelihood.network_input(x))
    assert changed_by(lambda: objective.discriminator_step(model, x, weights, reference)) == paths["adversary"]
    assert changed_by(lambda: objective.model_step(model, x, weights, reference)) == paths["inference"] | paths["generative"]
    with tf.GradientTape() as tape:
        loss, terms, _ = objective.model_terms(model, x, weights, reference)
    assert all(g is not None for g in tape.gradient(loss, model.variables_by_role("adversary")))
    assert {"loss", "bound", "kl", "reconstruction"} <= set(terms)


@pytest.mark.slow
def test_short_avb_run_on_digits_stays_finite_and_balanced(tmp_path, digits, monkeypatch):
    """The game on the default data with small networks: no NaN, and the discriminator neither
    fails (accuracy near 0) nor wins outright (near 1) in any epoch."""
    from vae_tf.training import train

    params = Params.model_validate({
        **TINY, "model": {"latent_dim": 4, "hidden_units": [64],
                          "posterior": {"kind": "implicit", "noise_dim": 4, "moment_samples": 16}},
        "objective": {"kind": "avb", "discriminator_units": [64]},
        "training": {"epochs": 30, "early_stopping_patience": 30},
    })
    monkeypatch.chdir(tmp_path)  # dvclive looks for a repository from the working directory
    history = train(params, digits, tmp_path / "avb.keras", tmp_path / "live", tmp_path / "backup").history
    assert len(history["loss"]) == 30
    for name, values in history.items():
        assert np.all(np.isfinite(values)), name
    for name in ("discriminator_accuracy", "val_discriminator_accuracy"):
        assert 0.05 < min(history[name]) and max(history[name]) < 0.98, (name, history[name])
    assert history["val_bound"][-1] > history["val_bound"][0] + 10  # it learned
