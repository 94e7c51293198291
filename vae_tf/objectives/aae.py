"""The adversarial autoencoder (Makhzani et al. 2015): an autoencoder whose codes a
discriminator D(z) pushes towards draws of the prior; it needs draws of p(z) and of q(z|x), no
density of either."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vae_tf import replicas
from vae_tf.networks import apply_to_leading, mlp
from vae_tf.objectives.base import OBJECTIVES, Objective, replica_loss, weighted_means
from vae_tf.objectives.bounds import discriminator_accuracy, discriminator_loss


@OBJECTIVES.register("aae")
class AAE(Objective):
    """Each minibatch, the three phases of Makhzani et al. (2015), each on fresh draws:

    - reconstruction: one update of the encoder and decoder (`model.optimizer`) maximising
      mean_k log p(x|z_k), z_k ~ q(z|x);
    - discrimination: `discriminator_steps` updates of D (role adversary) minimising the
      logistic loss that tells codes z ~ q(z|x) (label 1) from draws z' ~ p(z) (label 0)
      (`discriminator_loss`);
    - regularisation: one update of the encoder (and of a prior whose draws carry gradients,
      as a flow prior's do) minimising, D fixed,
          adversarial_weight * mean_k [softplus(D(z_k)) + softplus(-D(z'_k))],
      the non-saturating generator loss (softplus(D(z)) = -log(1 - sigmoid(D(z)))): codes move to
      where D says "prior", a learnable prior's draws to where it says "code".

    The adversarial phase (discrimination and regularisation) steps `model.adversary_optimizer`,
    which holds its own moments for the encoder (`adversarial_roles`): summed into one step of
    one optimizer, the reconstruction's gradients (tens of nats) swamp the generator's and D
    wins outright (measured: D's validation accuracy 0.98 after 20 epochs on digits).

    It is no bound on log p(x): early stopping watches the validation reconstruction
    (`monitor`), and the model's log-likelihood is estimated like any other's (importance
    sampling with its proposal, AIS from the prior)."""

    monitor = "reconstruction"
    adversarial_roles = ("adversary", "inference", "generative")
    METRICS = ("loss", "reconstruction", "generator_loss", "discriminator_loss", "discriminator_accuracy")

    context_fields = ("latent_dim", "activation")

    def __init__(self, latent_dim: int, activation: str, num_samples: int, discriminator_units: Sequence[int],
                 discriminator_learning_rate: float, discriminator_steps: int, adversarial_weight: float, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.latent_dim = latent_dim
        self.discriminator_units, self.activation = tuple(discriminator_units), activation
        self.discriminator_learning_rate, self.discriminator_steps = discriminator_learning_rate, discriminator_steps
        self.adversarial_weight = adversarial_weight
        self.discriminator = mlp(discriminator_units, 1, activation, name="discriminator")

    def build(self, input_shape):
        self.discriminator.build((None, self.latent_dim))  # D sees z alone

    def critic(self, z) -> tf.Tensor:
        """D(z): logits [K, batch] for codes z [K, batch, L] (flattened for the Sequential)."""
        return apply_to_leading(self.discriminator, z)[..., 0]

    def draws(self, model, x) -> tuple[tf.Tensor, tf.Tensor]:
        """K codes z ~ q(z|x) and K prior draws z' ~ p(z) per example, [K, batch, L] each."""
        z = model.posterior.draw(model.likelihood.network_input(x), self.num_samples, model.next_seed()).z
        prior, seed = model.prior_distribution(), model.next_seed()
        z_prior = replicas.replica_rows(lambda n: prior.sample([self.num_samples, n], seed=seed), tf.shape(x)[0])
        return z, z_prior

    def reconstruction(self, model, x, z) -> tf.Tensor:
        """mean_k log p(x|z_k) [batch]."""
        return tf.reduce_mean(model.likelihood.distribution(z).log_prob(x), axis=0)

    def generator_loss(self, z, z_prior) -> tf.Tensor:
        """mean_k softplus(D(z_k)) + softplus(-D(z'_k)) [batch]."""
        return tf.reduce_mean(tf.nn.softplus(self.critic(z)) + tf.nn.softplus(-self.critic(z_prior)), axis=0)

    def discriminator_terms(self, model, x, weights) -> dict[str, tf.Tensor]:
        """D's logistic loss (the replica's share: key `loss`) and the tracked means of its loss
        and accuracy, on fresh draws (no gradient to the encoder or the prior)."""
        z, z_prior = (tf.stop_gradient(draw) for draw in self.draws(model, x))
        t_code, t_prior = self.critic(z), self.critic(z_prior)
        loss = tf.reduce_mean(discriminator_loss(t_code, t_prior), axis=0)
        means, _ = weighted_means({"discriminator_loss": loss, "discriminator_accuracy":
                                   tf.reduce_mean(discriminator_accuracy(t_code, t_prior), axis=0)}, weights)
        return {"loss": replica_loss(-loss, weights), **means}

    def reconstruction_step(self, model, x, weights) -> tf.Tensor:
        """The reconstruction phase (`model.optimizer`); returns the reconstruction [batch]."""
        def loss():
            reconstruction = self.reconstruction(model, x, self.draws(model, x)[0])
            return replica_loss(reconstruction, weights), reconstruction

        return descend(model.optimizer, loss, model.variables_by_role("inference", "generative"))

    def discriminator_step(self, model, x, weights) -> dict[str, tf.Tensor]:
        """One update of D (`model.adversary_optimizer`); returns D's tracked means."""
        def loss():
            game = self.discriminator_terms(model, x, weights)
            return game.pop("loss"), game

        return descend(model.adversary_optimizer, loss, model.variables_by_role("adversary"))

    def regularization_step(self, model, x, weights) -> tf.Tensor:
        """The regularisation phase (`model.adversary_optimizer`, D fixed); returns the
        generator loss [batch]."""
        def loss():
            generator = self.generator_loss(*self.draws(model, x))
            return replica_loss(-self.adversarial_weight * generator, weights), generator

        return descend(model.adversary_optimizer, loss, model.variables_by_role("inference", "generative"))

    def tracked(self, reconstruction, generator, weights):
        return weighted_means({"loss": self.adversarial_weight * generator - reconstruction,
                               "reconstruction": reconstruction, "generator_loss": generator}, weights)

    def update(self, model, x, weights):
        reconstruction = self.reconstruction_step(model, x, weights)
        for _ in range(self.discriminator_steps):
            game = self.discriminator_step(model, x, weights)
        means, total = self.tracked(reconstruction, self.regularization_step(model, x, weights), weights)
        return {**means, **game}, total

    def evaluate(self, model, x, weights):
        z, z_prior = self.draws(model, x)
        means, total = self.tracked(self.reconstruction(model, x, z), self.generator_loss(z, z_prior), weights)
        game = self.discriminator_terms(model, x, weights)
        game.pop("loss")
        return {**means, **game}, total


def descend(optimizer, loss_fn, variables):
    """One update by `optimizer` of `variables` on the scalar loss of `loss_fn() -> (loss,
    what to return)`; a variable the loss does not reach (a prior whose draws carry no
    gradient) gets a zero gradient."""
    with tf.GradientTape() as tape:
        loss, out = loss_fn()
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients([(tf.zeros(v.shape) if g is None else g, v) for g, v in zip(gradients, variables)])
    return out
