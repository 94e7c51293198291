"""Latent-variable models as Keras models: the base they share (decoder p(x|z), prior p(z), the
fused minibatch loop) and the VAE, whose posterior q(z|x) is a distribution (AVB: `vae_tf.avb`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import keras
import tensorflow as tf

from vae_tf import objectives
from vae_tf.likelihoods import Decoder
from vae_tf.posteriors import POSTERIORS
from vae_tf.priors import make_prior
from vae_tf.tfp import tfd


class LatentVariableModel(keras.Model):
    """What every model here shares: a decoder p(x|z), a prior p(z), a posterior q(z|x) (its
    kind is the subclass's), seeds, and a train/test step that loops over fused minibatches.

    A subclass defines `METRICS`, `encoder`, and
    - `posterior_moments(x, seed)`: E_q[z|x] and the standard deviations of q(z|x), [batch, L];
    - `proposal(x, seed, num_draws, scale)`: the importance-sampling proposal for log p(x), a
      distribution with batch shape [batch] (and `proposal_description`, it in words);
    - `_update(x, weights)`: one optimizer step on a minibatch; `_test_terms(x, weights)`: the
      terms without a step; both return (terms, total example weight).
    Data x is in the prepared representation (grey levels, {0, 1} or [0, 1]); the encoder sees
    grey levels scaled to [0, 1].
    """

    METRICS: tuple[str, ...] = ()

    def __init__(self, data_dim: int, latent_dim: int, hidden_units: Sequence[int] = (256, 256),
                 activation: str = "leaky_relu", likelihood: str = "categorical", n_levels: Optional[int] = None,
                 prior: str = "standard_normal", num_samples: int = 1, dynamic_binarization: bool = False,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(
            data_dim=data_dim, latent_dim=latent_dim, hidden_units=list(hidden_units), activation=activation,
            likelihood=likelihood, n_levels=n_levels, prior=prior, num_samples=num_samples,
            dynamic_binarization=dynamic_binarization, seed=seed,
        )
        self.data_dim, self.latent_dim, self.num_samples = data_dim, latent_dim, num_samples
        self.prior_name, self.dynamic_binarization = prior, dynamic_binarization
        self.input_scale = 1.0 / (n_levels - 1) if likelihood == "categorical" else 1.0
        self.decoder = Decoder(data_dim, n_levels, likelihood, hidden_units, activation, name="decoder")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.METRICS}

    def likelihood(self, z) -> tfd.Distribution:
        """p(x|z) for z of shape [..., latent_dim]: batch shape [...], event shape [data_dim]."""
        return self.decoder.distribution(z)

    def prior(self) -> tfd.Distribution:
        """p(z): event shape [latent_dim]."""
        return make_prior(self.prior_name, self.latent_dim)

    def encode(self, x, seed) -> dict[str, tf.Tensor]:
        """What `encode` serves: the mean and scale of q(z|x), [batch, L] each."""
        mean, scale = self.posterior_moments(x, seed)
        return {"mean": mean, "scale": scale}

    def call(self, x):
        """Reconstruction: the mean of p(x|z) at the posterior mean z = E_q[z|x]."""
        loc, _ = self.posterior_moments(x, seed=tf.constant([0, 0]))
        return self.likelihood(loc).mean()

    def next_seed(self) -> tf.Tensor:
        """A fresh stateless seed for TFP samplers, drawn from the model's seed generator."""
        return tf.cast(self.seed_generator.next(), tf.int32)

    # --- training --------------------------------------------------------------------

    def _track(self, terms, total) -> dict[str, tf.Tensor]:
        """Add a minibatch's means (weighted by its example count); return the running means."""
        for name, value in terms.items():
            self.trackers[name].update_state(value, sample_weight=total)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        """Runs one update (`_update`) per minibatch of `data` (see `as_minibatches`), all inside
        one compiled call: with XLA this saves a host round trip per update."""
        x, weights = as_minibatches(data)

        def update(i):
            batch = x[i]
            if self.dynamic_binarization:
                batch = tfd.Bernoulli(probs=batch, dtype=batch.dtype).sample(seed=self.next_seed())
            self._track(*self._update(batch, weights[i]))

        return self._each_minibatch(x, update)

    def test_step(self, data):
        """The terms of every minibatch of `data`, one minibatch at a time (bounded memory)."""
        x, weights = as_minibatches(data)
        return self._each_minibatch(x, lambda i: self._track(*self._test_terms(x[i], weights[i])))

    def _each_minibatch(self, x, step) -> dict[str, tf.Tensor]:
        """`step(i)` for every minibatch i of x [steps, batch, D] in a `tf.while_loop` (one
        compiled call); returns the trackers' running means."""

        def body(i):
            step(i)
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(x)[0], body, (tf.constant(0),))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def get_config(self):
        return {**super().get_config(), **self.config}


def weighted_mean(weights, total):
    """The example-weighted minibatch mean: sum_i w_i v_i / sum_i w_i (padding has weight 0)."""
    return lambda values: tf.reduce_sum(weights * values) / total


@keras.saving.register_keras_serializable(package="vae_tf")
class VAE(LatentVariableModel):
    """Variational autoencoder: q(z|x), p(x|z) and p(z), trained on one of two bounds on
    log p(x), each estimated from K reparameterized draws z_k = mu(x) + sigma(x) * eps_k:

    - `elbo`: ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)), the expectation averaged over
      the K draws, the KL analytic where TFP has it. Training maximises
      E[log p(x|z)] - beta * KL, beta the `kl_weight` variable (a warm-up callback may ramp it).
    - `iwae`: L_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)] (Burda et al. 2016), with the
      reparameterized gradient of L_K or the doubly reparameterized one (DReG, Tucker et al.
      2018; see `_dreg_gradients`).

    The K draws of a whole minibatch go through the decoder in one call ([K * batch] latents).
    Data x is in the prepared representation (grey levels, {0, 1} or [0, 1]).
    """

    METRICS = ("loss", "bound", "elbo", "reconstruction", "kl")

    def __init__(self, data_dim: int, latent_dim: int, hidden_units: Sequence[int] = (256, 256),
                 activation: str = "leaky_relu", posterior: str = "gaussian", objective: str = "elbo",
                 gradient: str = "reparameterized", kl_weight: float = 1.0, **kwargs):
        super().__init__(data_dim, latent_dim, hidden_units, activation, **kwargs)
        self.config = {**self.config, "posterior": posterior, "objective": objective, "gradient": gradient,
                       "kl_weight": kl_weight}
        self.objective, self.gradient = objective, gradient
        self.encoder = POSTERIORS[posterior](latent_dim, hidden_units, activation, name="encoder")
        self.kl_weight = keras.Variable(kl_weight, trainable=False, name="kl_weight", dtype="float32")

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.decoder.build((None, self.latent_dim))
        self.built = True

    # --- the parts -------------------------------------------------------------------

    def posterior(self, x) -> tfd.Distribution:
        """q(z|x): batch shape [batch], event shape [latent_dim]."""
        return self.encoder.distribution(x * self.input_scale)

    def posterior_moments(self, x, seed=None) -> tuple[tf.Tensor, tf.Tensor]:
        """The mean and scale of q(z|x), exact (`seed` unused)."""
        return self.encoder.moments(x * self.input_scale)

    def proposal(self, x, seed=None, num_draws=None, scale=None) -> tfd.Distribution:
        """q(z|x) itself (the other arguments are for implicit posteriors)."""
        return self.posterior(x)

    def proposal_description(self, num_draws=None, scale=None) -> str:
        return "q(z|x)"

    # --- the objective ---------------------------------------------------------------

    def draws(self, x, stop_posterior_gradient: bool = False) -> dict[str, tf.Tensor]:
        """K draws z_k ~ q(z|x) per example and the log-densities at them: z [K, batch, L];
        log_px (log p(x|z_k)), log_weights [K, batch]; kl [batch] (analytic where TFP has it).
        With `stop_posterior_gradient` the log q(z_k|x) in the weights is taken with q's
        parameters held fixed (z_k still depends on them): the DReG form."""
        q = self.posterior(x)
        z = q.sample(self.num_samples, seed=self.next_seed())
        log_px = self.likelihood(z).log_prob(x)
        q_weights = tf.nest.map_structure(tf.stop_gradient, q, expand_composites=True) if stop_posterior_gradient else q
        prior = self.prior()
        return {"z": z, "log_px": log_px,
                "log_weights": objectives.log_importance_weights(log_px, prior.log_prob(z), q_weights.log_prob(z)),
                "kl": objectives.kl_divergence(q, prior, z)}

    def _terms(self, draws, weights) -> tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]:
        """Example-weighted minibatch means: the loss minimised, and the terms tracked (`bound`
        is the objective's bound: the ELBO, or L_K)."""
        total = tf.reduce_sum(weights)
        mean = weighted_mean(weights, total)
        reconstruction, kl = tf.reduce_mean(draws["log_px"], axis=0), draws["kl"]
        elbo = objectives.elbo(reconstruction, kl)
        if self.objective == "iwae":
            bound = objectives.iwae_bound(draws["log_weights"])
            loss = -mean(bound)
        else:
            bound = elbo
            loss = -mean(objectives.elbo(reconstruction, kl, self.kl_weight))
        terms = {"loss": loss, "bound": mean(bound), "elbo": mean(elbo),
                 "reconstruction": mean(reconstruction), "kl": mean(kl)}
        return loss, terms, total

    def _gradients(self, x, weights):
        """Gradients of the loss for `self.trainable_variables`, and the minibatch terms."""
        dreg = self.objective == "iwae" and self.gradient == "dreg"
        with tf.GradientTape(persistent=dreg) as tape:
            draws = self.draws(x, stop_posterior_gradient=dreg)
            loss, terms, total = self._terms(draws, weights)
            if dreg:
                surrogate = -tf.reduce_sum(weights * objectives.iwae_surrogate(draws["log_weights"])) / total
        if not dreg:
            return tape.gradient(loss, self.trainable_variables), terms, total
        return self._dreg_gradients(tape, surrogate, draws), terms, total

    def _dreg_gradients(self, tape, surrogate, draws):
        """DReG (Tucker et al. 2018) from one backward pass through the decoder.

        With log w_k taken with q's parameters held fixed and w~ = softmax_k(log w):
            decoder (and other model) parameters theta: sum_k w~_k d log w_k / d theta (IWAE's own),
            encoder parameters phi: sum_k w~_k^2 (d log w_k / d z_k) (d z_k / d phi).
        The surrogate sum_k w~_k log w_k (`objectives.iwae_surrogate`) gives the first and, for z, the
        gradients w~_k d log w_k / d z_k; scaling those by w~_k and back-propagating through
        z = mu(x) + sigma(x) * eps alone gives the second. Its expectation equals the IWAE
        encoder gradient's, with a signal-to-noise ratio that does not vanish as K grows.
        """
        encoder_ids = {id(v) for v in self.encoder.trainable_variables}
        model_variables = [v for v in self.trainable_variables if id(v) not in encoder_ids]
        *model_gradients, z_gradient = tape.gradient(surrogate, [*model_variables, draws["z"]])
        w = objectives.normalized_weights(draws["log_weights"])[..., tf.newaxis]
        encoder_gradients = tape.gradient(draws["z"], self.encoder.trainable_variables,
                                          output_gradients=w * z_gradient)
        by_id = {id(v): g for v, g in zip(model_variables, model_gradients)}
        by_id.update({id(v): g for v, g in zip(self.encoder.trainable_variables, encoder_gradients)})
        return [by_id[id(v)] for v in self.trainable_variables]

    def _update(self, x, weights):
        gradients, terms, total = self._gradients(x, weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        return terms, total

    def _test_terms(self, x, weights):
        _, terms, total = self._terms(self.draws(x), weights)
        return terms, total


def as_minibatches(data) -> tuple[tf.Tensor, tf.Tensor]:
    """Normalise a step's data to minibatches x [steps, batch, D] and example weights [steps, batch].

    `data` is either x [batch, D] (one minibatch, every example weight 1) or a pair
    (x [steps, batch, D], weights [steps, batch]) as built by `vae_tf.training.minibatches`,
    where weight 0 marks the padding that fills the last, short minibatch of an epoch.
    """
    if isinstance(data, (tuple, list)):
        x, weights = data
        return x, tf.cast(weights, x.dtype)
    return data[tf.newaxis], tf.ones_like(data[tf.newaxis, :, 0])
