"""The evidence lower bound, with an optional KL weight and its warm-up."""

from __future__ import annotations

import keras

from vae_tf.objectives.base import OBJECTIVES, Objective
from vae_tf.objectives.bounds import elbo


@OBJECTIVES.register("elbo")
class ELBO(Objective):
    """ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)), the expectation averaged over K draws, the
    KL analytic where TFP has it (`VAE.draws`). Training maximises E[log p(x|z)] - beta * KL,
    beta = `kl_weight`, the `beta` variable ramped linearly from beta / N to beta over the first N =
    `kl_warmup_epochs` epochs (`KLWarmup`)."""

    def __init__(self, num_samples: int, kl_weight: float, kl_warmup_epochs: int, **kwargs):
        super().__init__(num_samples, **kwargs)  # kwargs: `refinement` (Objective) and the layer's
        self.kl_weight, self.kl_warmup_epochs = kl_weight, kl_warmup_epochs
        self.beta = keras.Variable(kl_weight, trainable=False, name="kl_weight", dtype="float32")

    @property
    def warmup_epochs(self) -> int:
        return self.kl_warmup_epochs

    def terms(self, draws):
        reconstruction, kl = draws["reconstruction"], draws["kl"]
        bound = elbo(reconstruction, kl)
        return {"objective": elbo(reconstruction, kl, self.beta), "bound": bound, "elbo": bound,
                "reconstruction": reconstruction, "kl": kl}

    def callbacks(self):
        return [KLWarmup(self)] if self.warmup_epochs > 0 else []


class KLWarmup(keras.callbacks.Callback):
    """beta_epoch = kl_weight * min(1, (epoch + 1) / kl_warmup_epochs): a linear KL warm-up."""

    def __init__(self, objective: ELBO):
        super().__init__()
        self.objective = objective

    def on_epoch_begin(self, epoch, logs=None):
        o = self.objective
        o.beta.assign(o.kl_weight * min(1.0, (epoch + 1) / o.kl_warmup_epochs))
