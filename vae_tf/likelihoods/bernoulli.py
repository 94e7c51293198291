"""The Bernoulli likelihood over binary pixels."""

from __future__ import annotations

import tensorflow as tf

from vae_tf.likelihoods.base import LIKELIHOODS, Likelihood
from vae_tf.tfp import tfd


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod_d Bernoulli(x_d | sigmoid(logits_d)); raw output: the logits."""

    representation, accepts = "binary", ("binary",)

    @staticmethod
    def values_per_pixel(n_levels):
        return 1

    def distribution_of(self, raw) -> tfd.Distribution:
        return tfd.Independent(tfd.Bernoulli(logits=raw, dtype=tf.float32), 1)

    def parameters_of(self, raw) -> dict[str, tf.Tensor]:
        return {"logits": raw}

    def valid(self, x):
        return tf.reduce_all((x == 0) | (x == 1)), "binary, 0 or 1"
