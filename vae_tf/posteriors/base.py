"""What every posterior q(z|x) is: a Keras layer of role `inference`, registered by kind.

Shapes: h [batch, D] is the likelihood's network input for x (`Likelihood.network_input`);
draws lead, z [K, batch, L]. `architecture` is `model.network` (`vae_tf.networks`): what sees h.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Optional

import tensorflow as tf

from vae_tf.posteriors.params import KINDS
from vae_tf.registry import Part, Registry
from vae_tf.tfp import tfd

POSTERIORS = Registry(KINDS)
MIN_SCALE = 1e-5


class Draw(NamedTuple):
    """K draws of a posterior per example: z [K, batch, L]; log_q [K, batch], log q(z|x) at them
    (exact, a bound, or None without a density); q, the distribution q(z|x) where there is one
    (for an analytic KL), else None; auxiliary_loss [K, batch], a loss for the kind's own auxiliary
    networks, which only its bound on log q uses, for an objective that takes no log q (avb) to
    add, else None. What a caller does not use is not computed inside a compiled step (TensorFlow
    prunes it), so `draw(...).z` costs what a sampler alone would."""

    z: tf.Tensor
    log_q: Optional[tf.Tensor]
    q: Optional[tfd.Distribution]
    auxiliary_loss: Optional[tf.Tensor] = None


Refine = Callable[[tfd.Distribution], tfd.Distribution]  # a diagonal Gaussian q(z|x) -> the refined one


@dataclass(frozen=True)
class Proposal:
    """What importance sampling of log p(x) draws from for a batch of x, and what else evaluation
    needs of q(z|x) there:
    - `distribution`: draws z and the log-density at them (`experimental_sample_and_log_prob`),
      batch shape [batch], event shape [L];
    - `description`: it in words, for the estimator's name;
    - `moments(seed)`: q(z|x)'s mean and standard deviation, [batch, L] each;
    - `anywhere()`: a distribution with a log-density at any z, and its description, for
      diagnostics away from the draws (the ELBO surgery's aggregate posterior): by default
      `distribution` itself; `stand_in` where that has a log-density at its own draws only."""

    distribution: tfd.Distribution
    description: str
    moments: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
    stand_in: Optional[Callable[[], tuple[tfd.Distribution, str]]] = None

    def anywhere(self) -> tuple[tfd.Distribution, str]:
        return self.stand_in() if self.stand_in else (self.distribution, self.description)


class Posterior(Part):
    """q(z|x). Its contract, six members:
    - `draw(h, K, seed, stop_density_gradient, refine)`: K reparameterized draws and what is known
      of log q(z|x) at them (`Draw`); a kind writes `_draw`, the checks are here;
    - `distribution(h)`: q(z|x), for a kind with a density (`density` "exact");
    - `moments(h, seed)`: q's mean and standard deviation, derived from `distribution`; a kind
      without one estimates them from its draws;
    - `proposal(h, seed, num_draws, scale)`: what importance sampling draws from, q itself unless
      the kind overrides it (no density, or a bound on it only);
    - `encode(h, seed)`: what the exported `encode` returns, from `moments`;
    - `density`: what its draws know of log q(z|x) ("exact", "bound", an estimate whose
      expectation bounds it from above so that the ELBO and L_K built on it stay lower bounds, or
      None, samples only).
    `density` and its other offers (DReG, refinement) are declared by its params class
    (`params_class`, `vae_tf.posteriors.params.PosteriorParams`), which `draw` enforces."""

    role = "inference"
    context_fields = ("latent_dim", "hidden_units", "activation", "architecture")

    @property
    def density(self) -> Optional[str]:
        return self.params_class.density

    def __init__(self, latent_dim: int, hidden_units: Sequence[int], activation: str,
                 architecture: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.architecture = latent_dim, architecture
        self.latent_dims = (latent_dim,)  # the sizes of its stochastic layers, bottom first (`vae_tf.models.depth`)
        self.hidden_units, self.activation = tuple(hidden_units), activation

    def draw(self, h, num_samples: int, seed, stop_density_gradient: bool = False,
             refine: Optional[Refine] = None) -> Draw:
        """K = `num_samples` reparameterized draws z ~ q(z|x) and what is known of log q at them.
        With `stop_density_gradient`, log q is taken with q's parameters held fixed (z still
        depends on them): the form DReG needs (params `supports_dreg`). With `refine`, of q(z|x)
        refined by it first (semi-amortized inference, `vae_tf.refinement`; params
        `gaussian_proposal`)."""
        if stop_density_gradient and not self.params_class.supports_dreg:
            raise NotImplementedError(f"the {self.kind!r} posterior has no DReG form (log q with its parameters "
                                      "held fixed)")
        if refine is not None and not self.params_class.gaussian_proposal:
            raise NotImplementedError(f"posterior {self.kind!r} cannot be refined (no Gaussian q(z|x))")
        return self._draw(h, num_samples, seed, stop_density_gradient, refine)

    def _draw(self, h, num_samples: int, seed, stop_density_gradient: bool, refine: Optional[Refine]) -> Draw:
        """`draw`, its arguments checked against what the kind offers."""
        raise NotImplementedError

    def distribution(self, h) -> tfd.Distribution:
        """q(z|x): batch shape [batch], event shape [L]."""
        raise NotImplementedError(f"posterior {self.kind!r} has no density")

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """The mean and standard deviation of q(z|x), [batch, L] each."""
        q = self.distribution(h)
        return q.mean(), q.stddev()

    def proposal(self, h, seed, num_draws: int, scale: float) -> Proposal:
        """The importance-sampling proposal for log p(x): q itself (`seed`, `num_draws` and
        `scale` are for kinds that fit one to their draws)."""
        return Proposal(self.distribution(h), "q(z|x)", lambda moment_seed: self.moments(h, moment_seed))

    def encode(self, h, seed) -> dict[str, tf.Tensor]:
        """What the exported `encode` returns: the mean and scale of q(z|x), [batch, L]."""
        mean, scale = self.moments(h, seed)
        return {"mean": mean, "scale": scale}
