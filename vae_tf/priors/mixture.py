"""The mixture-of-Gaussians prior."""

from __future__ import annotations

import keras
import tensorflow as tf

from vae_tf.posteriors import MIN_SCALE
from vae_tf.priors.base import PRIORS, Prior
from vae_tf.tfp import Normal, tfd

UNIT_SCALE = 0.5413248  # softplus^-1(1): components start with unit scales


@PRIORS.register("mixture")
class MixturePrior(Prior):
    """p(z) = sum_c pi_c N(z; m_c, diag s_c^2), C components, pi = softmax(logits), s_c =
    softplus(raw_c) + 1e-5, all learnt; means start at N(0, I) draws, weights equal, scales 1.
    TFP's `MixtureSameFamily`; no closed-form KL to a Gaussian q, so the ELBO's KL is the Monte
    Carlo one."""

    def __init__(self, latent_dim: int, num_components: int, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.num_components = num_components
        self.logits = self.add_weight(shape=(num_components,), initializer="zeros", name="logits")
        self.locs = self.add_weight(shape=(num_components, latent_dim), initializer=keras.initializers.RandomNormal(),
                                    name="locs")
        self.raw_scales = self.add_weight(shape=(num_components, latent_dim),
                                          initializer=keras.initializers.Constant(UNIT_SCALE), name="raw_scales")

    def _scales(self):
        return tf.nn.softplus(self.raw_scales) + MIN_SCALE

    def distribution(self, posterior=None) -> tfd.Distribution:
        return gaussian_mixture(self.logits, self.locs, self._scales())

    def marginals(self, posterior=None) -> tfd.Distribution:
        """p(z_j) = sum_c pi_c N(z_j; m_cj, s_cj^2)."""
        return mixture_marginals(self.logits, self.locs, self._scales())


def gaussian_mixture(logits, locs, scales) -> tfd.Distribution:
    """sum_c softmax(logits)_c N(m_c, diag s_c^2) (logits [C], locs and scales [C, L]): event [L]."""
    components = tfd.Independent(Normal(tf.convert_to_tensor(locs), tf.convert_to_tensor(scales)), 1)
    return tfd.MixtureSameFamily(tfd.Categorical(logits=tf.convert_to_tensor(logits)), components)


def mixture_marginals(logits, locs, scales) -> tfd.Distribution:
    """The marginals of a mixture of diagonal Gaussians (logits [C], locs and scales [C, L]):
    univariate mixtures, batch shape [L]."""
    locs, scales = tf.transpose(locs), tf.transpose(scales)  # [L, C]
    categorical = tfd.Categorical(logits=tf.broadcast_to(logits, tf.shape(locs)))
    return tfd.MixtureSameFamily(categorical, Normal(locs, scales))
