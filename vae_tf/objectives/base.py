"""What every objective is: a Keras layer, registered by kind, that turns a model's draws into
per-example terms and runs the model's update on a minibatch."""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from vae_tf import replicas
from vae_tf.objectives.params import KINDS
from vae_tf.registry import Part, Registry

OBJECTIVES = Registry(KINDS)


def weighted_means(terms: dict[str, tf.Tensor], weights: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Example-weighted minibatch means sum_i w_i v_i / sum_i w_i of per-example terms [batch]
    (padding rows have weight 0), and the total weight. A replica's share of a padded minibatch
    may be all padding: its means are then 0, with total weight 0 (so they count for nothing)."""
    total = tf.reduce_sum(weights)
    return {name: tf.math.divide_no_nan(tf.reduce_sum(weights * value), total) for name, value in terms.items()}, total


def replica_loss(objective: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """-sum_i w_i t_i / (the minibatch's total weight over all replicas): what a replica
    minimises so that the replicas' summed gradients are those of the global mean."""
    return -tf.reduce_sum(weights * objective) / replicas.global_sum(tf.reduce_sum(weights))


class Objective(Part):
    """A bound on log p(x) and how to climb it. A kind defines `terms(draws)`, per-example
    tensors [batch] from the model's draws (`VAE.draws`): `objective` (what training maximises),
    `bound` (the bound it estimates, for early stopping) and the others named in `METRICS`.

    `refinement` (the settings of `vae_tf.refinement.refine`, or None): the draws are of q(z|x)
    refined per example first (semi-amortized; `VAE.draws`).

    The default `update` takes one optimizer step of the inference and generative variables on
    the loss -mean(objective); kinds with their own estimator (DReG) or their own players (AVB)
    override it. Variables an objective holds itself (a discriminator) have role `adversary`.
    """

    role = "adversary"
    uses_dreg = False  # draws with stop_density_gradient (DReG)
    METRICS: tuple[str, ...] = ("loss", "bound", "elbo", "reconstruction", "kl")
    monitor = "bound"  # the tracked term early stopping maximises on the validation data
    adversarial_roles = ("adversary",)  # the roles whose variables `model.adversary_optimizer` updates
    warmup_epochs = 0  # epochs whose bound is not comparable (early stopping starts after them)

    def __init__(self, num_samples: int, refinement: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        self.num_samples, self.refinement = num_samples, refinement

    @property
    def draws_per_example(self) -> int:
        """The draws of q(z|x) each example takes in a step, as its params say (K; M K for M groups of K)."""
        return self.params.draws_per_example

    def build(self, input_shape):
        """`input_shape`: that of the [x, z] pairs an adversary sees, (None, D + L)."""

    def terms(self, draws: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def callbacks(self) -> list[keras.callbacks.Callback]:
        """Keras callbacks training needs for this objective (e.g. a KL warm-up)."""
        return []

    def loss_and_terms(self, model, x, weights, stop_density_gradient: bool = False):
        """The draws, the replica's loss (`replica_loss`), the tracked minibatch means (`loss`
        unscaled: -mean(objective)) and the total weight."""
        draws = model.draws(x, self.draws_per_example, stop_density_gradient, self.refinement)
        per_example = self.terms(draws)
        objective = per_example.pop("objective")
        means, total = weighted_means({"loss": -objective, **per_example}, weights)
        return draws, replica_loss(objective, weights), means, total

    def update(self, model, x, weights):
        """One step of `model.optimizer` on the inference and generative variables. Returns the
        tracked terms and the minibatch's total weight."""
        variables = model.variables_by_role("inference", "generative")
        with tf.GradientTape() as tape:
            _, loss, terms, total = self.loss_and_terms(model, x, weights)
        model.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return terms, total

    def evaluate(self, model, x, weights):
        """The tracked terms without a step."""
        _, _, terms, total = self.loss_and_terms(model, x, weights)
        return terms, total
