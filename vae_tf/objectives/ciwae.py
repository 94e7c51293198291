"""The combination importance-weighted bound (CIWAE; Rainforth et al. 2018)."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.objectives.base import OBJECTIVES, Objective
from vae_tf.objectives.bounds import elbo, iwae_bound


@OBJECTIVES.register("ciwae")
class CIWAE(Objective):
    """beta ELBO + (1 - beta) L_K of the same K draws, the ELBO as their mean log-weight
    (1/K) sum_k log w_k: a lower bound on log p(x) for beta in [0, 1] (both terms are), the ELBO's
    term keeping the encoder's gradient from vanishing as K grows; beta = 1 is the ELBO of K
    draws, beta = 0 IWAE's L_K. The bound reported is the combination trained."""

    def __init__(self, num_samples: int, beta: float, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.beta = beta

    def terms(self, draws):
        log_weights, reconstruction, kl = draws["log_weights"], draws["reconstruction"], draws["kl"]
        bound = self.beta * tf.reduce_mean(log_weights, axis=0) + (1.0 - self.beta) * iwae_bound(log_weights)
        return {"objective": bound, "bound": bound, "elbo": elbo(reconstruction, kl),
                "reconstruction": reconstruction, "kl": kl}
