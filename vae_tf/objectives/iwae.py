"""The importance-weighted bound L_K, with reparameterized or doubly reparameterized gradients."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.objectives.base import OBJECTIVES, Objective, replica_loss
from vae_tf.objectives.bounds import elbo, iwae_bound, iwae_surrogate, normalized_weights


@OBJECTIVES.register("iwae")
class IWAE(Objective):
    """L_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)] (Burda et al. 2016), z_k ~ q(z|x)
    reparameterized; the gradient of L_K itself (`reparameterized`), or DReG (`dreg`, Tucker et
    al. 2018; see `update`)."""

    def __init__(self, num_samples: int, gradient: str, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.gradient = gradient

    @property
    def uses_dreg(self) -> bool:
        return self.gradient == "dreg"

    def terms(self, draws):
        reconstruction, kl = draws["reconstruction"], draws["kl"]
        bound = iwae_bound(draws["log_weights"])
        return {"objective": bound, "bound": bound, "elbo": elbo(reconstruction, kl),
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
        """
        if not self.uses_dreg:
            return super().update(model, x, weights)
        generative, inference = model.variables_by_role("generative"), model.variables_by_role("inference")
        with tf.GradientTape(persistent=True) as tape:
            draws, _, terms, total = self.loss_and_terms(model, x, weights, stop_density_gradient=True)
            surrogate = replica_loss(iwae_surrogate(draws["log_weights"]), weights)
        *generative_gradients, z_gradient = tape.gradient(surrogate, [*generative, draws["z"]])
        w = normalized_weights(draws["log_weights"])[..., tf.newaxis]
        if model.prior.uses_posterior:
            # log p(z) depends on phi besides through z (a VampPrior): that explicit term keeps IWAE's
            # weights w~. The surrogate's whole phi-gradient is it plus the path term with weights
            # w~; replacing the latter's w~ by w~^2 adds the path term with weights w~^2 - w~.
            inference_gradients = [total + path for total, path in zip(
                tape.gradient(surrogate, inference, unconnected_gradients="zero"),
                tape.gradient(draws["z"], inference, output_gradients=(w - 1.0) * z_gradient,
                              unconnected_gradients="zero"))]
        else:
            inference_gradients = tape.gradient(draws["z"], inference, output_gradients=w * z_gradient)
        del tape
        model.optimizer.apply_gradients(zip([*generative_gradients, *inference_gradients], [*generative, *inference]))
        return terms, total
