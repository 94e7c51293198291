"""The multiply importance-weighted bound L_{M,K} (MIWAE; Rainforth et al. 2018)."""

from __future__ import annotations

from vae_tf.objectives.base import OBJECTIVES, Objective
from vae_tf.objectives.bounds import elbo, grouped_iwae_bound


@OBJECTIVES.register("miwae")
class MIWAE(Objective):
    """L_{M,K}(x) = (1/M) sum_m log (1/K) sum_k w_{m,k}, w_{m,k} = p(x, z_{m,k}) / q(z_{m,k}|x) for
    M K draws of q(z|x) (`grouped_iwae_bound`), reparameterized. K = 1 is the ELBO of M draws,
    M = 1 IWAE's L_K: M trades the bound's tightness (set by K) for the encoder's gradient, whose
    signal-to-noise ratio grows as sqrt(M / K) where IWAE's shrinks as 1 / sqrt(K)."""

    def __init__(self, num_samples: int, num_groups: int, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.num_groups = num_groups

    def terms(self, draws):
        reconstruction, kl = draws["reconstruction"], draws["kl"]
        bound = grouped_iwae_bound(draws["log_weights"], self.num_groups)
        return {"objective": bound, "bound": bound, "elbo": elbo(reconstruction, kl),
                "reconstruction": reconstruction, "kl": kl}
