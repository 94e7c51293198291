"""The partially importance-weighted objective (PIWAE; Rainforth et al. 2018)."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.objectives.base import OBJECTIVES, replica_loss
from vae_tf.objectives.bounds import grouped_iwae_bound, iwae_bound
from vae_tf.objectives.miwae import MIWAE


@OBJECTIVES.register("piwae")
class PIWAE(MIWAE):
    """From one set of M K draws of q(z|x), the generative variables (decoder, prior) climb
    L_{MK} = log (1/MK) sum w, IWAE's tightest bound of those draws, and the inference variables
    (encoder) L_{M,K} (`MIWAE`), whose gradient keeps its signal-to-noise ratio: each part gets
    the bound that suits it (Rainforth et al. 2018). The bound reported is L_{MK}."""

    def terms(self, draws):
        bound = iwae_bound(draws["log_weights"])
        return {**super().terms(draws), "objective": bound, "bound": bound}

    def update(self, model, x, weights):
        """One step: generative variables by the gradient of L_{MK}, inference ones by that of
        L_{M,K}, both of the same draws."""
        generative, inference = model.variables_by_role("generative"), model.variables_by_role("inference")
        with tf.GradientTape(persistent=True) as tape:
            draws, loss, terms, total = self.loss_and_terms(model, x, weights)
            encoder_loss = replica_loss(grouped_iwae_bound(draws["log_weights"], self.num_groups), weights)
        gradients = [*tape.gradient(loss, generative), *tape.gradient(encoder_loss, inference)]
        del tape
        model.optimizer.apply_gradients(zip(gradients, [*generative, *inference]))
        return terms, total
