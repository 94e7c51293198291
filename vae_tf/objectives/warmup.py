"""The KL warm-up of the objectives with a KL part: its weight beta ramped up over the first epochs."""

from __future__ import annotations

import keras

from vae_tf.objectives.base import Objective


class WarmedUp(Objective):
    """An objective whose KL part log p(z) - log q(z|x) is weighted by the `beta` variable in
    training, ramped linearly from beta_max / N to beta_max = `kl_weight` over the first N =
    `kl_warmup_epochs` epochs (`KLWarmup`; N = 0: beta_max throughout). The bound it reports is
    always the unweighted one, so early stopping watches log p(x)'s bound from the end of the
    warm-up on (`warmup_epochs`). A kind whose KL part is not weighted but for a warm-up
    (`weighted_without_warmup` False: IWAE, AVB) has no `beta` without one, so that its models saved
    before warm-ups existed still load."""

    weighted_without_warmup = True

    def __init__(self, num_samples: int, kl_warmup_epochs: int = 0, kl_weight: float = 1.0, **kwargs):
        super().__init__(num_samples, **kwargs)
        self.kl_weight, self.kl_warmup_epochs = kl_weight, kl_warmup_epochs
        if self.weighted_without_warmup or kl_warmup_epochs:
            self.beta = keras.Variable(kl_weight, trainable=False, name="kl_weight", dtype="float32")

    @property
    def warmup_epochs(self) -> int:
        return self.kl_warmup_epochs

    def callbacks(self):
        return [KLWarmup(self)] if self.warmup_epochs > 0 else []


class KLWarmup(keras.callbacks.Callback):
    """beta_epoch = kl_weight * min(1, (epoch + 1) / kl_warmup_epochs): a linear KL warm-up."""

    def __init__(self, objective: WarmedUp):
        super().__init__()
        self.objective = objective

    def on_epoch_begin(self, epoch, logs=None):
        o = self.objective
        o.beta.assign(o.kl_weight * min(1.0, (epoch + 1) / o.kl_warmup_epochs))
