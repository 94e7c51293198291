"""The Gaussian likelihood over intensities."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.likelihoods.base import LIKELIHOODS, Likelihood
from vae_tf.tfp import tfd

MIN_SCALE = 1e-3


@LIKELIHOODS.register("gaussian")
class GaussianLikelihood(Likelihood):
    """p(x|z) = prod_d N(x_d | loc_d, scale_d), scale = softplus(raw) + 1e-3; raw output:
    [loc, raw scale]."""

    representation, accepts = "continuous", ("continuous",)

    @staticmethod
    def values_per_pixel(n_levels):
        return 2

    def parameters_of(self, raw) -> dict[str, tf.Tensor]:
        loc, raw_scale = tf.split(raw, 2, axis=-1)
        return {"loc": loc, "scale": tf.nn.softplus(raw_scale) + MIN_SCALE}

    def distribution_of(self, raw) -> tfd.Distribution:
        return tfd.Independent(tfd.Normal(**self.parameters_of(raw)), 1)
