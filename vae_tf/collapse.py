"""Posterior collapse, watched while training: the decoder ignoring z, said where a person looks.

A model has collapsed when q(z|x) no longer depends on x: no unit is active (Var_x E_q[z_j|x]
below the threshold in every dimension, Burda et al. 2016) or the validation KL(q(z|x) || p(z))
is about zero. Both then leave p(x|z) to model the pixels' marginals, and the bound stays near
theirs. `CollapseWatch` measures the active units on the first validation images at the end of
every epoch (one encoder pass), adds them to the epoch's logs (`val_active_units`: dvclive plots
them, and its summary keeps the last under eval/), and after `patience` collapsed epochs in a row
has a `note` that the epoch lines and the end-of-training line print, and dvclive's summary keeps
(`posterior_collapse`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from vae_tf.config import EvaluationParams
from vae_tf.evaluation import active_units

# Training reads no evaluation settings (its stage would rerun when one changes): the default threshold.
ACTIVE_UNIT_THRESHOLD = EvaluationParams.model_fields["active_unit_threshold"].default
KL_ABOUT_ZERO = 0.1  # nats per example: below it the code carries almost nothing of x
WATCHED_IMAGES = 1000  # validation images whose posterior means give the active units


class CollapseWatch(keras.callbacks.Callback):
    """Counts the epochs in a row whose validation KL (where the objective logs one, `val_kl`)
    is below `KL_ABOUT_ZERO` or whose active units (of the first `WATCHED_IMAGES` of `x_val`,
    variance `threshold`) are none. List it before `Progress`, which prints its `note`."""

    def __init__(self, x_val: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD, patience: int = 3):
        super().__init__()
        self.x_val, self.threshold, self.patience = tf.constant(x_val[:WATCHED_IMAGES]), threshold, patience

    def on_train_begin(self, logs=None):
        self.collapsed_epochs, self.note = 0, ""

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        mean, _ = self.model.posterior_moments(self.x_val, seed=tf.constant([0, 0]))
        active, _ = active_units(np.asarray(mean), self.threshold)
        logs["val_active_units"] = active  # of validation images: dvclive's eval/active_units
        kl = logs.get("val_kl")
        collapsed = active == 0 or (kl is not None and kl < KL_ABOUT_ZERO)
        self.collapsed_epochs = self.collapsed_epochs + 1 if collapsed else 0
        latent = mean.shape[-1]
        self.note = (f"posterior collapse: {active} of {latent} units active"
                     f"{'' if kl is None else f', validation KL {kl:.2f} nats'} for {self.collapsed_epochs} "
                     "epochs (the decoder ignores z)" if self.collapsed_epochs >= self.patience else "")
