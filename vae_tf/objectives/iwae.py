"""The importance-weighted bound L_K, with reparameterized or doubly reparameterized gradients."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.objectives.base import OBJECTIVES, replica_loss
from vae_tf.objectives.bounds import elbo, iwae_bound, iwae_surrogate, normalized_weights
from vae_tf.objectives.warmup import WarmedUp


@OBJECTIVES.register("iwae")
class IWAE(WarmedUp):
    """L_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)] (Burda et al. 2016), z_k ~ q(z|x)
    reparameterized; the gradient of L_K itself (`reparameterized`), or DReG (`dreg`, Tucker et
    al. 2018; see `update`). With a KL warm-up, training climbs L_K of the tempered weights
    log w_k^beta = log p(x|z_k) + beta (log p(z_k) - log q(z_k|x)) (`WarmedUp`; beta = 1: L_K)."""

    weighted_without_warmup = False

    def __init__(self, num_samples: int, gradient: str, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.gradient = gradient

    @property
    def uses_dreg(self) -> bool:
        return self.gradient == "dreg"

    def tempered(self, draws):
        """log w^beta [K, batch]; log w itself without a warm-up (the same numbers, not rounded anew)."""
        if not self.kl_warmup_epochs:
            return draws["log_weights"]
        return draws["log_px"] + self.beta * (draws["log_weights"] - draws["log_px"])

    def terms(self, draws):
        reconstruction, kl = draws["reconstruction"], draws["kl"]
        bound = iwae_bound(draws["log_weights"])
        return {"objective": iwae_bound(self.tempered(draws)), "bound": bound, "elbo": elbo(reconstruction, kl),
                "reconstruction": reconstruction, "kl": kl}

    def update(self, model, x, weights):
        """DReG from one backward pass through the decoder. With log w_k taken with q's parameters
        held fixed and w~ = softmax_k(log w):
            generative variables theta: sum_k w~_k d log w_k / d theta (IWAE's own gradient),
            inference variables phi:    sum_k w~_k^2 (d log w_k / d z_k) (d z_k / d phi).
        The surrogate sum_k w~_k log w_k (`iwae_surrogate`) gives the first and, for z, the
        gradients w~_k d log w_k / d z_k; scaling those by w~_k and back-propagating through the
        reparameterized draws z(phi) alone gives the second. Its expectation equals the IWAE
        inference gradient's, with a signal-to-noise ratio that does not vanish as K grows.

        Tempered (log w^beta, w~ its softmax), the score term -beta sum_k w~_k d log q(z_k)/d phi
        becomes, reparameterized, -beta sum_k w~_k (1 - w~_k) (d log w_k^beta / d z_k)(d z_k / d phi):
        the path term's weights are w~_k ((1 - beta) + beta w~_k), w~_k^2 at beta = 1.
        """
        if not self.uses_dreg:
            return super().update(model, x, weights)
        generative, inference = model.variables_by_role("generative"), model.variables_by_role("inference")
        with tf.GradientTape(persistent=True) as tape:
            draws, _, terms, total = self.loss_and_terms(model, x, weights, stop_density_gradient=True)
            log_weights = self.tempered(draws)
            surrogate = replica_loss(iwae_surrogate(log_weights), weights)
        *generative_gradients, z_gradient = tape.gradient(surrogate, [*generative, draws["z"]])
        w = normalized_weights(log_weights)[..., tf.newaxis]
        if self.kl_warmup_epochs:
            w = (1.0 - self.beta) + self.beta * w  # the path weights over the surrogate's w~
        if model.prior.uses_posterior:
            # log p(z) depends on phi besides through z (a VampPrior): that explicit term keeps IWAE's
            # weights w~. The surrogate's whole phi-gradient is it plus the path term with weights
            # w~; replacing the latter's w~ by w~ w adds the path term with weights w~ (w - 1).
            inference_gradients = [total + path for total, path in zip(
                tape.gradient(surrogate, inference, unconnected_gradients="zero"),
                tape.gradient(draws["z"], inference, output_gradients=(w - 1.0) * z_gradient,
                              unconnected_gradients="zero"))]
        else:
            inference_gradients = tape.gradient(draws["z"], inference, output_gradients=w * z_gradient)
        del tape
        model.optimizer.apply_gradients(zip([*generative_gradients, *inference_gradients], [*generative, *inference]))
        return terms, total
