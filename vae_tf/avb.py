"""Adversarial Variational Bayes (Mescheder, Nowozin and Geiger 2017): an implicit posterior
z = g(x, eps) trained against a discriminator T(x, z) that learns log q(z|x) - log r(z|x)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from vae_tf import objectives
from vae_tf.models import LatentVariableModel, weighted_mean
from vae_tf.posteriors import ImplicitEncoder, fitted_gaussian, sample_moments
from vae_tf.tfp import Normal, tfd


@keras.saving.register_keras_serializable(package="vae_tf")
class Discriminator(keras.layers.Layer):
    """T(x, z): an MLP on [x, z] giving one logit; x [..., D] and z [..., L] share leading dims."""

    def __init__(self, hidden_units: Sequence[int], activation: str, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units, self.activation = tuple(hidden_units), activation
        self.layers_ = [*(keras.layers.Dense(units, activation=activation) for units in hidden_units),
                        keras.layers.Dense(1)]

    def build(self, input_shape):
        width = input_shape[-1]
        for layer in self.layers_:
            layer.build((None, width))
            width = layer.units

    def call(self, x, z):
        h = tf.concat([tf.broadcast_to(x, tf.concat([tf.shape(z)[:-1], tf.shape(x)[-1:]], 0)), z], axis=-1)
        for layer in self.layers_:
            h = layer(h)
        return h[..., 0]

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation}


@keras.saving.register_keras_serializable(package="vae_tf")
class AVB(LatentVariableModel):
    """An implicit posterior q(z|x) (`ImplicitEncoder`), a decoder p(x|z) and a prior p(z),
    trained by a two-player game (Mescheder et al. 2017, Algorithm 1 with adaptive contrast):

    - the discriminator T(x, z~) minimises the logistic loss between z~ = s(z), z ~ q(z|x), and
      z~ = s(z), z ~ r(z|x) (`objectives.discriminator_loss`), so that T -> log q~ - log r~;
    - the encoder and decoder maximise, over K draws z_k ~ q(z|x),
          ELBO(x) ~= mean_k [log p(x|z_k) + log p(z_k) - log r(z_k|x) - T(x, s(z_k))],
      T held fixed (its gradient in z still flows into the encoder).

    r and s: without adaptive contrast r = p(z) = N(0, I) and s is the identity (plain AVB);
    with it, r(z|x) = N(m(x), diag s(x)^2), m and s the (stop-gradient) mean and standard
    deviation of `moment_samples` draws of q(z|x), and s(z) = (z - m) / s, so T only has to learn
    how q differs from the Gaussian with its own moments: KL(q || r) is far smaller than
    KL(q || p), and easier for T in more dimensions.

    `discriminator_steps` discriminator updates (its own optimizer, set in `compile`) precede
    each encoder/decoder update. q has no density: log p(x) is estimated with a Gaussian fitted to
    draws of q (`proposal`), or by annealed importance sampling (`vae_tf.ais`).
    """

    METRICS = ("loss", "bound", "reconstruction", "kl", "discriminator_loss", "discriminator_accuracy")

    def __init__(self, data_dim: int, latent_dim: int, hidden_units: Sequence[int] = (256, 256),
                 activation: str = "leaky_relu", noise_dim: int = 16, discriminator_units: Sequence[int] = (256, 256),
                 discriminator_steps: int = 1, adaptive_contrast: bool = True, moment_samples: int = 32, **kwargs):
        super().__init__(data_dim, latent_dim, hidden_units, activation, **kwargs)
        self.config = {**self.config, "noise_dim": noise_dim, "discriminator_units": list(discriminator_units),
                       "discriminator_steps": discriminator_steps, "adaptive_contrast": adaptive_contrast,
                       "moment_samples": moment_samples}
        self.discriminator_steps, self.adaptive_contrast = discriminator_steps, adaptive_contrast
        self.moment_samples = moment_samples
        self.encoder = ImplicitEncoder(latent_dim, hidden_units, activation, noise_dim, name="encoder")
        self.discriminator = Discriminator(discriminator_units, activation, name="discriminator")
        self.discriminator_optimizer = None

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.decoder.build((None, self.latent_dim))
        self.discriminator.build((None, input_shape[-1] + self.latent_dim))
        self.built = True

    def compile(self, optimizer="adam", discriminator_optimizer=None, **kwargs):
        """`optimizer` updates the encoder and decoder, `discriminator_optimizer` (default: a
        copy of `optimizer`'s settings) the discriminator."""
        super().compile(optimizer=optimizer, **kwargs)
        self.discriminator_optimizer = discriminator_optimizer or self.optimizer.from_config(self.optimizer.get_config())
        self.optimizer.build(self._generator_variables())
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self):
        return {**super().get_compile_config(),
                "discriminator_optimizer": keras.optimizers.serialize(self.discriminator_optimizer)}

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    def _generator_variables(self):
        return [*self.encoder.trainable_variables, *self.decoder.trainable_variables]

    # --- the parts -------------------------------------------------------------------

    def sample_posterior(self, x, num_samples: int, seed) -> tf.Tensor:
        """z [num_samples, batch, L] ~ q(z|x)."""
        return self.encoder.sample(x * self.input_scale, num_samples, seed)

    def posterior_moments(self, x, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """The mean and standard deviation of q(z|x), estimated from `moment_samples` draws."""
        return sample_moments(self.sample_posterior(x, self.moment_samples, seed))

    def proposal(self, x, seed, num_draws: int, scale: float = 1.0) -> tfd.Distribution:
        """A Gaussian (full covariance) fitted to `num_draws` draws of q(z|x) of each example,
        its standard deviations times `scale`."""
        return fitted_gaussian(self.sample_posterior(x, num_draws, seed), scale)

    def proposal_description(self, num_draws: int, scale: float = 1.0) -> str:
        return f"Gaussian fitted to {num_draws} draws of q(z|x), scale x{scale:g}"

    def encode(self, x, seed) -> dict[str, tf.Tensor]:
        """`moment_samples` draws of q(z|x), samples [batch, n, L], and their mean and scale."""
        z = self.sample_posterior(x, self.moment_samples, seed)
        mean, scale = sample_moments(z)
        return {"mean": mean, "scale": scale, "samples": tf.transpose(z, [1, 0, 2])}

    # --- the game --------------------------------------------------------------------

    def _reference(self, x):
        """r(z|x), batch shape [batch], and the map s with s(z) ~ N(0, I) for z ~ r (see the class
        docstring)."""
        if not self.adaptive_contrast:
            return tfd.BatchBroadcast(self.prior(), tf.shape(x)[:1]), lambda z: z
        m, s = sample_moments(tf.stop_gradient(self.sample_posterior(x, self.moment_samples, self.next_seed())))
        return tfd.Independent(Normal(m, s), 1), lambda z: (z - m) / s

    def _discriminator_terms(self, x, weights, reference) -> dict[str, tf.Tensor]:
        """T's logistic loss and accuracy on K fresh draws of q (no gradient to the encoder)
        and of r, both through s; minibatch means."""
        r, standardize = reference
        z_q = tf.stop_gradient(self.sample_posterior(x, self.num_samples, self.next_seed()))
        z_r = r.sample(self.num_samples, seed=self.next_seed())
        x_in = x * self.input_scale
        t_q, t_r = self.discriminator(x_in, standardize(z_q)), self.discriminator(x_in, standardize(z_r))
        mean = weighted_mean(weights, tf.reduce_sum(weights))
        return {"discriminator_loss": mean(tf.reduce_mean(objectives.discriminator_loss(t_q, t_r), axis=0)),
                "discriminator_accuracy": mean(tf.reduce_mean(objectives.discriminator_accuracy(t_q, t_r), axis=0))}

    def _terms(self, x, weights, reference) -> tuple[tf.Tensor, dict[str, tf.Tensor], tf.Tensor]:
        """The encoder/decoder loss -ELBO (estimated with T) and its parts, minibatch means."""
        r, standardize = reference
        z = self.sample_posterior(x, self.num_samples, self.next_seed())
        t = self.discriminator(x * self.input_scale, standardize(z))
        log_px = self.likelihood(z).log_prob(x)
        kl = objectives.avb_kl(t, r.log_prob(z), self.prior().log_prob(z))
        total = tf.reduce_sum(weights)
        mean = weighted_mean(weights, total)
        reconstruction, kl = tf.reduce_mean(log_px, axis=0), tf.reduce_mean(kl, axis=0)
        bound = mean(objectives.elbo(reconstruction, kl))
        return -bound, {"loss": -bound, "bound": bound, "reconstruction": mean(reconstruction), "kl": mean(kl)}, total

    def _update(self, x, weights):
        """`discriminator_steps` updates of T, then one of the encoder and decoder against it
        (their loss' gradient for T's variables is never applied). The minibatch's reference r
        is computed once: it depends on the encoder only."""
        reference = self._reference(x)
        for _ in range(self.discriminator_steps):
            with tf.GradientTape() as tape:
                game = self._discriminator_terms(x, weights, reference)
            variables = self.discriminator.trainable_variables
            self.discriminator_optimizer.apply_gradients(
                zip(tape.gradient(game["discriminator_loss"], variables), variables))
        with tf.GradientTape() as tape:
            loss, terms, total = self._terms(x, weights, reference)
        variables = self._generator_variables()
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {**terms, **game}, total

    def _test_terms(self, x, weights):
        reference = self._reference(x)
        _, terms, total = self._terms(x, weights, reference)
        return {**terms, **self._discriminator_terms(x, weights, reference)}, total
