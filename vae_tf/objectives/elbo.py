"""The evidence lower bound, with an optional KL weight and its warm-up."""

from __future__ import annotations

from vae_tf.objectives.base import OBJECTIVES
from vae_tf.objectives.bounds import elbo
from vae_tf.objectives.warmup import WarmedUp


@OBJECTIVES.register("elbo")
class ELBO(WarmedUp):
    """ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)), the expectation averaged over K draws, the
    KL analytic where TFP has it (`VAE.draws`). Training maximises E[log p(x|z)] - beta * KL,
    beta = `kl_weight`, ramped up over the first `kl_warmup_epochs` epochs (`WarmedUp`)."""

    def terms(self, draws):
        reconstruction, kl = draws["reconstruction"], draws["kl"]
        bound = elbo(reconstruction, kl)
        return {"objective": elbo(reconstruction, kl, self.beta), "bound": bound, "elbo": bound,
                "reconstruction": reconstruction, "kl": kl}
