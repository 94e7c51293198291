"""The model: a posterior, a prior, a likelihood and an objective, passed in as Keras layers."""

from __future__ import annotations

import functools
from typing import Optional

import keras
import tensorflow as tf

from vae_tf import replicas
from vae_tf.objectives.bounds import kl_divergence, log_importance_weights
from vae_tf.posteriors import Proposal
from vae_tf.refinement import refine
from vae_tf.tfp import tfd

PARTS = ("likelihood", "posterior", "prior", "objective")
SEED_STATE = "seed_generator_state"  # the key of the seed generator's state among the saved weights


@keras.saving.register_keras_serializable(package="vae_tf")
class VAE(keras.Model):
    """A latent-variable model p(z) p(x|z) with an inference model q(z|x), trained on a bound on
    log p(x). Every method is the composition of its parts' (`vae_tf.registry`):

    - `posterior` q(z|x), `prior` p(z), `likelihood` p(x|z) (the decoder, which also says how
      the networks see x: `network_input`), each a layer that builds its TFP distributions on
      call; the model never asks which kind a part is;
    - `objective`: per-example terms from the model's `draws`, and the update of a minibatch
      (`Objective.update`), which picks variables by role (`variables_by_role`) and steps
      `optimizer` (inference and generative variables) and, if the objective holds adversaries,
      `adversary_optimizer`.

    `train_step` runs one update per minibatch of a step's data, fused into one compiled call
    without a distribution strategy (see `as_minibatches`); under one, one minibatch per step
    (an optimizer update cannot sit inside a `tf.while_loop` there). With
    `dynamic_binarization`, each training minibatch is redrawn x ~ Bernoulli(x) first.
    Data x is in the prepared representation (grey levels, {0, 1} or [0, 1]).
    """

    def __init__(self, likelihood, posterior, prior, objective, dynamic_binarization: bool = False, seed: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        parts = [keras.saving.deserialize_keras_object(part) if isinstance(part, dict) else part
                 for part in (likelihood, posterior, prior, objective)]
        self.likelihood, self.posterior, self.prior, self.objective = parts
        self.dynamic_binarization, self.seed = dynamic_binarization, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.objective.METRICS}
        self.adversary_optimizer = None

    def build(self, input_shape):
        data_dim = input_shape[-1]
        latent_dim = self.posterior.latent_dim
        shapes = {"posterior": [None, data_dim], "likelihood": [None, self.posterior.latent_dims[0]],  # z1
                  "prior": [None, latent_dim], "objective": [None, data_dim + latent_dim]}
        for name in PARTS:
            part = getattr(self, name)
            if not part.built:
                part.build(shapes[name])
        owned = sum(len(getattr(self, name).trainable_variables) for name in PARTS)
        if owned != len(self.trainable_variables):
            raise TypeError(f"{len(self.trainable_variables) - owned} trainable variables belong to no part, "
                            "so they have no role and no optimizer would train them")
        self.built = True

    def compile(self, optimizer="adam", adversary_optimizer=None, **kwargs):
        """`optimizer` updates the inference and generative variables; `adversary_optimizer`
        (default: a copy of `optimizer`'s settings), if the objective has adversaries, those of
        its adversarial phase (`Objective.adversarial_roles`: the adversaries, and for an AAE the
        encoder's and the prior's moves against them)."""
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.variables_by_role("inference", "generative"))
        if self.variables_by_role("adversary"):
            self.adversary_optimizer = adversary_optimizer or self.optimizer.from_config(self.optimizer.get_config())
            self.adversary_optimizer.build(self.variables_by_role(*self.objective.adversarial_roles))

    def get_compile_config(self):
        config = super().get_compile_config()
        if self.adversary_optimizer is not None:
            config["adversary_optimizer"] = keras.optimizers.serialize(self.adversary_optimizer)
        return config

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))

    def get_config(self):
        return {**super().get_config(), **{name: keras.saving.serialize_keras_object(getattr(self, name))
                                           for name in PARTS},
                "dynamic_binarization": self.dynamic_binarization, "seed": self.seed}

    # --- the parts, composed ----------------------------------------------------------

    def variables_by_role(self, *roles: str) -> list:
        """The trainable variables of the parts whose role is one of `roles`."""
        parts = [getattr(self, name) for name in PARTS]
        return [v for part in parts if part.role in roles for v in part.trainable_variables]

    @property
    def latent_dim(self) -> int:
        return self.posterior.latent_dim

    @property
    def data_dim(self) -> int:
        return self.likelihood.data_dim

    @property
    def num_samples(self) -> int:
        """K, the draws per example of the training objective."""
        return self.objective.num_samples

    def prior_distribution(self) -> tfd.Distribution:
        """p(z): event shape [L]."""
        return self.prior.distribution(self.posterior)

    def posterior_moments(self, x, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """E_q[z|x] and the standard deviations of q(z|x), [batch, L] each."""
        return self.posterior.moments(self.likelihood.network_input(x), seed)

    def proposal(self, x, seed, num_draws: int, scale: float) -> Proposal:
        """The importance-sampling proposal for log p(x) and q(z|x)'s moments (`Posterior.proposal`)."""
        return self.posterior.proposal(self.likelihood.network_input(x), seed, num_draws, scale)

    def encode(self, x, seed) -> dict[str, tf.Tensor]:
        return self.posterior.encode(self.likelihood.network_input(x), seed)

    def call(self, x):
        """Reconstruction: the mean of p(x|z) at the posterior mean z = E_q[z|x]."""
        loc, _ = self.posterior_moments(x, seed=tf.constant([0, 0]))
        return self.likelihood.distribution(loc).mean()

    def adapt(self, x) -> None:
        """Initialise what the parts take from the training data x [N, D] (`Prior.adapt`: a
        VampPrior's pseudo-inputs), seeded by the model's seed. Call before training."""
        self.prior.adapt(self.likelihood.network_input(tf.constant(x)), self.seed)

    def next_seed(self) -> tf.Tensor:
        """A fresh stateless seed, drawn from the model's seed generator."""
        return tf.cast(self.seed_generator.next(), tf.int32)

    def save_own_variables(self, store):
        """Keras saves a layer's weights but not its seed generators' states: saved here too, so
        a run resumed from a checkpoint draws the noise the uninterrupted run would have."""
        super().save_own_variables(store)
        store[SEED_STATE] = self.seed_generator.state.numpy()

    def load_own_variables(self, store):
        if SEED_STATE in store.keys():
            self.seed_generator.state.assign(store[SEED_STATE])
        super().load_own_variables({key: store[key] for key in store.keys() if key != SEED_STATE})

    def draws(self, x, num_samples: int, stop_density_gradient: bool = False,
              refinement: Optional[dict] = None) -> dict[str, tf.Tensor]:
        """K draws z_k ~ q(z|x) per example and the log-densities at them: z [K, batch, L], log_px
        (log p(x|z_k)) [K, batch], reconstruction (its mean over k) [batch]; where q has a density,
        log_weights (log p(x|z_k) + log p(z_k) - log q(z_k|x)) [K, batch] and kl [batch]
        (KL(q(z|x) || p(z)): analytic where TFP has it, else the mean of log q - log p).
        `stop_density_gradient`: see `Posterior.draw`. `refinement`: the settings of
        `vae_tf.refinement.refine`; the draws are then of q(z|x) refined (`Posterior.draw`'s `refine`)."""
        h, prior = self.likelihood.network_input(x), self.prior_distribution()
        refined = None if refinement is None else functools.partial(
            refine, x=x, likelihood=self.likelihood.distribution, prior=prior, seed=self.next_seed(), **refinement)
        draw = self.posterior.draw(h, num_samples, self.next_seed(), stop_density_gradient, refined)
        log_px = self.likelihood.distribution(draw.z).log_prob(x)
        out = {"z": draw.z, "log_px": log_px, "reconstruction": tf.reduce_mean(log_px, axis=0)}
        if draw.log_q is not None:
            log_pz = prior.log_prob(draw.z)
            out["log_weights"] = log_importance_weights(log_px, log_pz, draw.log_q)
            out["kl"] = (kl_divergence(draw.q, prior, draw.z) if draw.q is not None
                         else tf.reduce_mean(draw.log_q - log_pz, axis=0))
        return out

    # --- training ----------------------------------------------------------------------

    def train_step(self, data):
        x, weights = as_minibatches(data)

        def update(i):
            batch = self.binarize(x[i]) if self.dynamic_binarization else x[i]
            self._track(*self.objective.update(self, batch, weights[i]))

        return self._each_minibatch(x, update)

    def binarize(self, x) -> tf.Tensor:
        """x' ~ Bernoulli(x) for intensities x [batch, D] (dynamic binarization): 1 where a
        uniform draw u < x (Philox; this replica's rows of the global minibatch's draws)."""
        u = replicas.noise(tf.random.stateless_uniform, tf.unstack(tf.shape(x)), self.next_seed(), batch_axis=0)
        return tf.cast(u < x, x.dtype)

    def test_step(self, data):
        """The terms of every minibatch of `data`, one minibatch at a time (bounded memory)."""
        x, weights = as_minibatches(data)
        return self._each_minibatch(x, lambda i: self._track(*self.objective.evaluate(self, x[i], weights[i])))

    def _track(self, terms, total):
        """Add a minibatch's means, weighted by its total example weight."""
        for name, value in terms.items():
            self.trackers[name].update_state(value, sample_weight=total)

    def _each_minibatch(self, x, step) -> dict[str, tf.Tensor]:
        """`step(i)` for every minibatch i of x [steps, batch, D]: in a `tf.while_loop` (one
        compiled call) on one device, unrolled under a distribution strategy. Returns the
        trackers' running means."""
        if tf.distribute.has_strategy():
            for i in range(x.shape[0]):
                step(i)
            return {name: tracker.result() for name, tracker in self.trackers.items()}

        def body(i):
            step(i)
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(x)[0], body, (tf.constant(0),))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    @property
    def metrics(self):
        return list(self.trackers.values())


def as_minibatches(data) -> tuple[tf.Tensor, tf.Tensor]:
    """A step's data as minibatches x [steps, batch, D] and example weights [steps, batch].

    `data` is x, or a pair (x, weights), with x either one minibatch [batch, D] or several
    [steps, batch, D] (as built by `vae_tf.training.minibatches`), where weight 0 marks the
    padding that fills the last, short minibatch of an epoch. Without weights, every one is 1.
    """
    x, weights = data if isinstance(data, (tuple, list)) else (data, tf.ones_like(data[..., 0]))
    weights = tf.cast(weights, x.dtype)
    if x.shape.rank == 2:
        return x[tf.newaxis], weights[tf.newaxis]
    return x, weights
