"""What every posterior q(z|x) is: a Keras layer of role `inference`, registered by kind.

Shapes: h [batch, D] is the likelihood's network input for x (`Likelihood.network_input`);
draws lead, z [K, batch, L]. `architecture` is `model.network` (`vae_tf.networks`): what sees h.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import keras
import tensorflow as tf

from vae_tf.config import POSTERIORS as POSTERIOR_PARAMS
from vae_tf.registry import Registry
from vae_tf.tfp import tfd

POSTERIORS = Registry(POSTERIOR_PARAMS)
MIN_SCALE = 1e-5


class Draw(NamedTuple):
    """K draws of a posterior per example: z [K, batch, L]; log_q [K, batch], log q(z|x) at them
    (exact, a bound, or None without a density); q, the distribution q(z|x) where there is one
    (for an analytic KL), else None."""

    z: tf.Tensor
    log_q: Optional[tf.Tensor]
    q: Optional[tfd.Distribution]


class Posterior(keras.layers.Layer):
    """q(z|x). A kind defines `draw`, and `distribution(h)` if it has a density (`density` is
    "exact") or `moments(h, seed)` if not. `density` says what its draws know of log q(z|x):
    "exact", "bound" (an estimate whose expectation bounds it from above, so that the ELBO and
    L_K built on it stay lower bounds), or None (samples only); it and the kind's other offers
    (DReG, a Gaussian proposal) are declared by its params class (`params_class`,
    `vae_tf.config.parts.PosteriorParams`). `proposal` is what importance sampling of log p(x)
    (evaluation, the exported `log_likelihood`) draws from."""

    role = "inference"

    @property
    def density(self) -> Optional[str]:
        return self.params_class.density

    def __init__(self, latent_dim: int, architecture: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.architecture = latent_dim, architecture

    def draw(self, h, num_samples: int, seed, stop_density_gradient: bool = False) -> Draw:
        """K = `num_samples` reparameterized draws z ~ q(z|x) and what is known of log q at them.
        With `stop_density_gradient`, log q is taken with q's parameters held fixed (z still
        depends on them): the form DReG needs."""
        raise NotImplementedError

    def sample(self, h, num_samples: int, seed) -> tf.Tensor:
        """z [num_samples, batch, L] ~ q(z|x)."""
        return self.draw(h, num_samples, seed).z

    def sample_and_auxiliary_loss(self, h, num_samples: int, seed) -> tuple[tf.Tensor, Optional[tf.Tensor]]:
        """`sample`, and a loss [K, batch] for the kind's own auxiliary networks, which only its
        bound on log q uses, to add where an objective takes no log q (avb): None without any."""
        return self.sample(h, num_samples, seed), None

    def distribution(self, h) -> tfd.Distribution:
        """q(z|x): batch shape [batch], event shape [L]."""
        raise NotImplementedError(f"posterior {self.kind!r} has no density")

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """The mean and standard deviation of q(z|x), [batch, L] each."""
        q = self.distribution(h)
        return q.mean(), q.stddev()

    def proposal(self, h, seed, num_draws: int, scale: float) -> tfd.Distribution:
        """The importance-sampling proposal for log p(x): q itself (the arguments are for kinds
        without a density)."""
        return self.distribution(h)

    def proposal_and_moments(self, h, seeds, num_draws: int, scale: float):
        """What evaluation needs of q(z|x) per batch: `proposal(h, seeds[0], ...)` and
        `moments(h, seeds[1])`. A kind whose proposal is fitted to draws of q takes the moments
        from the same draws."""
        return self.proposal(h, seeds[0], num_draws, scale), *self.moments(h, seeds[1])

    def proposal_description(self, num_draws: int, scale: float) -> str:
        return "q(z|x)"

    def density_proposal(self, h, seed, num_draws: int, scale: float) -> tuple[tfd.Distribution, str]:
        """A stand-in for q(z|x) with a log-density at any z, for diagnostics that need q's density
        away from its own draws (the ELBO surgery's aggregate posterior), and its description: the
        proposal, where that has one."""
        return self.proposal(h, seed, num_draws, scale), self.proposal_description(num_draws, scale)

    def encode(self, h, seed) -> dict[str, tf.Tensor]:
        """What the exported `encode` returns: the mean and scale of q(z|x), [batch, L]."""
        mean, scale = self.moments(h, seed)
        return {"mean": mean, "scale": scale}

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "architecture": self.architecture}
