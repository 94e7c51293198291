"""The VAE: a Keras model composed of a posterior q(z|x), a decoder p(x|z) and a prior p(z)."""

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


@keras.saving.register_keras_serializable(package="vae_tf")
class VAE(keras.Model):
    """Variational autoencoder trained on the ELBO with a reparameterized one-sample estimate:

        ELBO(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z)),   z = mu(x) + sigma(x) * eps.

    The KL is analytic where TFP has it (Gaussian q, standard normal p). Training maximises
    E[log p(x|z)] - beta * KL, beta the `kl_weight` variable (a KL warm-up callback may ramp it).
    Data x is in the prepared representation (grey levels, {0, 1} or [0, 1]).
    """

    METRICS = ("loss", "elbo", "reconstruction", "kl")

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden_units: Sequence[int] = (256, 256),
        activation: str = "leaky_relu",
        likelihood: str = "categorical",
        n_levels: Optional[int] = None,
        posterior: str = "gaussian",
        prior: str = "standard_normal",
        kl_weight: float = 1.0,
        dynamic_binarization: bool = False,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config = dict(
            data_dim=data_dim, latent_dim=latent_dim, hidden_units=list(hidden_units),
            activation=activation, likelihood=likelihood, n_levels=n_levels, posterior=posterior,
            prior=prior, kl_weight=kl_weight, dynamic_binarization=dynamic_binarization, seed=seed,
        )
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.prior_name, self.dynamic_binarization = prior, dynamic_binarization
        # The encoder sees grey levels scaled to [0, 1].
        self.input_scale = 1.0 / (n_levels - 1) if likelihood == "categorical" else 1.0
        self.encoder = POSTERIORS[posterior](latent_dim, hidden_units, activation, name="encoder")
        self.decoder = Decoder(data_dim, n_levels, likelihood, hidden_units, activation, name="decoder")
        self.kl_weight = keras.Variable(kl_weight, trainable=False, name="kl_weight", dtype="float32")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.METRICS}

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.decoder.build((None, self.latent_dim))
        self.built = True

    # --- the parts -------------------------------------------------------------------

    def posterior(self, x) -> tfd.Distribution:
        """q(z|x): batch shape [batch], event shape [latent_dim]."""
        return self.encoder.distribution(x * self.input_scale)

    def likelihood(self, z) -> tfd.Distribution:
        """p(x|z) for z of shape [..., latent_dim]: batch shape [...], event shape [data_dim]."""
        return self.decoder.distribution(z)

    def prior(self) -> tfd.Distribution:
        """p(z): event shape [latent_dim]."""
        return make_prior(self.prior_name, self.latent_dim)

    def call(self, x):
        """Reconstruction: the mean of p(x|z) at the posterior mean z = mu(x)."""
        loc, _ = self.encoder.moments(x * self.input_scale)
        return self.likelihood(loc).mean()

    # --- training --------------------------------------------------------------------

    def next_seed(self) -> tf.Tensor:
        """A fresh stateless seed for TFP samplers, drawn from the model's seed generator."""
        return tf.cast(self.seed_generator.next(), tf.int32)

    def elbo_terms(self, x) -> tuple[tf.Tensor, tf.Tensor]:
        """Per-example one-sample estimate of E_q[log p(x|z)], and KL(q(z|x) || p(z))."""
        q = self.posterior(x)
        z = q.sample(seed=self.next_seed())
        reconstruction = self.likelihood(z).log_prob(x)
        return reconstruction, objectives.kl_divergence(q, self.prior(), z)

    def _terms(self, x, weights):
        """Example-weighted means of the training loss and the ELBO terms of a minibatch."""
        reconstruction, kl = self.elbo_terms(x)
        total = tf.reduce_sum(weights)

        def mean(values):
            return tf.reduce_sum(weights * values) / total

        loss = -mean(objectives.elbo(reconstruction, kl, self.kl_weight))
        terms = {"loss": loss, "elbo": mean(objectives.elbo(reconstruction, kl)),
                 "reconstruction": mean(reconstruction), "kl": mean(kl)}
        return loss, terms, total

    def _track(self, terms, total) -> dict[str, tf.Tensor]:
        """Add a minibatch's means (weighted by its example count); return the running means."""
        for name, value in terms.items():
            self.trackers[name].update_state(value, sample_weight=total)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        """Runs one optimizer update per minibatch of `data` (see `as_minibatches`), all inside
        one compiled call: with XLA this saves a host round trip per update."""
        x, weights = as_minibatches(data)

        def update(i):
            batch = x[i]
            if self.dynamic_binarization:
                batch = tfd.Bernoulli(probs=batch, dtype=batch.dtype).sample(seed=self.next_seed())
            with tf.GradientTape() as tape:
                loss, terms, total = self._terms(batch, weights[i])
            gradients = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
            self._track(terms, total)
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(x)[0], update, (tf.constant(0),))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def test_step(self, data):
        x, weights = as_minibatches(data)
        _, terms, total = self._terms(tf.reshape(x, [-1, self.data_dim]), tf.reshape(weights, [-1]))
        return self._track(terms, total)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def get_config(self):
        return {**super().get_config(), **self.config}


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
