"""Adversarial Variational Bayes (Mescheder, Nowozin and Geiger 2017): the ELBO of a posterior
with or without a density, its log q(z|x) - log r(z|x) learnt by a discriminator T(x, z)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from vae_tf import replicas
from vae_tf.networks import apply_beside, dense_layers, features, features_width, gated, trunk
from vae_tf.objectives.base import OBJECTIVES, replica_loss, weighted_means
from vae_tf.objectives.bounds import avb_kl, discriminator_accuracy, discriminator_loss, elbo
from vae_tf.objectives.warmup import WarmedUp
from vae_tf.tfp import Normal, tfd


@keras.saving.register_keras_serializable(package="vae_tf")
class Discriminator(keras.layers.Layer):
    """T(x, z): an MLP on [f(x), z] giving one logit, f the image trunk of `model.network` (the
    identity for mlp); x [batch, D] and z [..., batch, L]."""

    def __init__(self, hidden_units: Sequence[int], activation: str, architecture: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units, self.activation, self.architecture = tuple(hidden_units), activation, architecture
        self.trunk = trunk(architecture, activation)
        self.layers_ = [*dense_layers(hidden_units, activation, gated(architecture)), keras.layers.Dense(1)]

    def build(self, input_shape):
        """input_shape: that of [x, z], (None, D + L)."""
        data_dim = math.prod(self.architecture["image_shape"]) if self.trunk else 0
        width = input_shape[-1] - data_dim + features_width(self.trunk, (None, data_dim))
        for layer in self.layers_:
            layer.build((None, width))
            width = layer.units

    def call(self, x, z):
        return self.logits(features(self.trunk, x), z)

    def logits(self, f, z):
        """T from the trunk's features f [batch, F] of x (x itself for an MLP): [..., batch]."""
        return apply_beside(self.layers_, f, z)[..., 0]

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation,
                "architecture": self.architecture}


class Reference(NamedTuple):
    """The reference r(z|x) that T tells q from: its distribution (batch shape [batch]), a
    sampler (num_samples, seed) -> z [K, batch, L], and the map s with s(z) ~ N(0, I) for z ~ r."""

    distribution: tfd.Distribution
    sample: Callable[[int, tf.Tensor], tf.Tensor]
    standardize: Callable[[tf.Tensor], tf.Tensor]


@OBJECTIVES.register("avb")
class AVB(WarmedUp):
    """A two-player game (Mescheder et al. 2017, Algorithm 1 with adaptive contrast):

    - the discriminator T(x, z~) minimises the logistic loss between z~ = s(z), z ~ q(z|x), and
      z~ = s(z), z ~ r(z|x) (`discriminator_loss`), so that T -> log q~ - log r~;
    - the encoder and decoder maximise, over K draws z_k ~ q(z|x),
          ELBO(x) ~= mean_k [log p(x|z_k) + log p(z_k) - log r(z_k|x) - T(x, s(z_k))],
      T held fixed (its gradient in z still flows into the encoder); with a KL warm-up
      (`WarmedUp`), mean_k log p(x|z_k) - beta KL~, KL~ the estimated KL part (the bound watched
      and reported stays the ELBO). T's game does not depend on beta.

    r and s: without adaptive contrast r = p(z) and s is the identity (plain AVB); with it,
    r(z|x) = N(m(x), diag s(x)^2), m and s q's mean and standard deviation (the posterior's
    `moments`, no gradient), and s(z) = (z - m) / s, so T only has to learn how q differs from
    the Gaussian with its own moments: KL(q || r) is far smaller than KL(q || p), and easier for
    T in more dimensions. It needs no density of q, so it trains an implicit posterior.

    `discriminator_steps` updates of T (variables of role adversary, `model.adversary_optimizer`)
    precede each update of the encoder and decoder (`model.optimizer`).
    """

    METRICS = ("loss", "bound", "reconstruction", "kl", "discriminator_loss", "discriminator_accuracy")
    weighted_without_warmup = False  # models saved before the warm-up existed hold no beta

    context_fields = ("activation", "architecture")

    def __init__(self, activation: str, architecture: Optional[dict], num_samples: int,
                 discriminator_units: Sequence[int], discriminator_learning_rate: float, discriminator_steps: int,
                 adaptive_contrast: bool, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.discriminator_units, self.activation = tuple(discriminator_units), activation
        self.discriminator_learning_rate, self.discriminator_steps = discriminator_learning_rate, discriminator_steps
        self.adaptive_contrast, self.architecture = adaptive_contrast, architecture
        self.discriminator = Discriminator(discriminator_units, activation, architecture, name="discriminator")

    def build(self, input_shape):
        self.discriminator.build(input_shape)

    def reference(self, model, h) -> Reference:
        """r(z|x) and s for a minibatch (see the class docstring); h is the networks' input."""
        batch = tf.shape(h)[0]
        if not self.adaptive_contrast:
            prior = model.prior_distribution()
            return Reference(tfd.BatchBroadcast(prior, [batch]),
                             lambda k, seed: replicas.replica_rows(lambda n: prior.sample([k, n], seed=seed), batch),
                             lambda z: z)
        m, s = (tf.stop_gradient(moment) for moment in model.posterior.moments(h, model.next_seed()))

        def sample(k, seed):
            return replicas.noise(tf.random.stateless_normal, [k, batch, tf.shape(m)[-1]], seed) * s + m

        return Reference(tfd.Independent(Normal(m, s), 1), sample, lambda z: (z - m) / s)

    def discriminator_terms(self, model, x, weights, reference: Reference) -> dict[str, tf.Tensor]:
        """T's logistic loss (the replica's share, as `replica_loss`: key `loss`) and the tracked
        minibatch means of its loss and accuracy, on K fresh draws of q (no gradient to the
        encoder) and of r, both through s (x through T's trunk once)."""
        h = model.likelihood.network_input(x)
        z_q = tf.stop_gradient(model.posterior.draw(h, self.num_samples, model.next_seed()).z)
        z_r = reference.sample(self.num_samples, model.next_seed())
        f = features(self.discriminator.trunk, h)
        t_q, t_r = (self.discriminator.logits(f, reference.standardize(z)) for z in (z_q, z_r))
        loss = tf.reduce_mean(discriminator_loss(t_q, t_r), axis=0)
        means, _ = weighted_means({"discriminator_loss": loss, "discriminator_accuracy":
                                   tf.reduce_mean(discriminator_accuracy(t_q, t_r), axis=0)}, weights)
        return {"loss": replica_loss(-loss, weights), **means}

    def model_terms(self, model, x, weights, reference: Reference):
        """The encoder/decoder's loss -ELBO (estimated with T, the replica's share; plus the
        posterior's auxiliary loss, if it has one) and the tracked minibatch means of the ELBO's
        parts; and the total weight."""
        h = model.likelihood.network_input(x)
        draw = model.posterior.draw(h, self.num_samples, model.next_seed())
        z, auxiliary = draw.z, draw.auxiliary_loss
        t = self.discriminator(h, reference.standardize(z))
        log_px = model.likelihood.distribution(z).log_prob(x)
        kl = avb_kl(t, reference.distribution.log_prob(z), model.prior_distribution().log_prob(z))
        reconstruction, kl = tf.reduce_mean(log_px, axis=0), tf.reduce_mean(kl, axis=0)
        bound = elbo(reconstruction, kl)
        means, total = weighted_means({"loss": -bound, "bound": bound, "reconstruction": reconstruction, "kl": kl},
                                      weights)
        objective = elbo(reconstruction, kl, self.beta) if self.kl_warmup_epochs else bound
        objective = objective if auxiliary is None else objective - tf.reduce_mean(auxiliary, axis=0)
        return replica_loss(objective, weights), means, total

    def discriminator_step(self, model, x, weights, reference: Reference) -> dict[str, tf.Tensor]:
        """One update of the adversary variables (T) by `model.adversary_optimizer`."""
        variables = model.variables_by_role("adversary")
        with tf.GradientTape() as tape:
            game = self.discriminator_terms(model, x, weights, reference)
        model.adversary_optimizer.apply_gradients(zip(tape.gradient(game.pop("loss"), variables), variables))
        return game

    def model_step(self, model, x, weights, reference: Reference):
        """One update of the inference and generative variables by `model.optimizer` against T
        (T's variables get no update, though the loss depends on them)."""
        variables = model.variables_by_role("inference", "generative")
        with tf.GradientTape() as tape:
            loss, terms, total = self.model_terms(model, x, weights, reference)
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return terms, total

    def update(self, model, x, weights):
        """`discriminator_steps` steps of T, then one of the encoder and decoder. The minibatch's
        reference r is computed once: it depends on the encoder only."""
        reference = self.reference(model, model.likelihood.network_input(x))
        for _ in range(self.discriminator_steps):
            game = self.discriminator_step(model, x, weights, reference)
        terms, total = self.model_step(model, x, weights, reference)
        return {**terms, **game}, total

    def evaluate(self, model, x, weights):
        reference = self.reference(model, model.likelihood.network_input(x))
        _, terms, total = self.model_terms(model, x, weights, reference)
        game = self.discriminator_terms(model, x, weights, reference)
        game.pop("loss")
        return {**terms, **game}, total
