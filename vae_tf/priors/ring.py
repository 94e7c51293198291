"""The ring prior: a fixed mixture of Gaussians on a circle, the adversarial autoencoder's
classic example of a prior it needs only draws of."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from vae_tf.priors.base import PRIORS, Prior
from vae_tf.priors.mixture import gaussian_mixture, mixture_marginals
from vae_tf.tfp import tfd


@PRIORS.register("ring")
class RingPrior(Prior):
    """p(z) = (1/C) sum_c N(z; m_c, diag s^2), m_c = (R cos 2 pi c/C, R sin 2 pi c/C, 0, ..., 0),
    s = (scale, scale, 1, ..., 1): C Gaussians evenly spaced on a circle of radius R in the first
    two dimensions, N(0, 1) in the others. No variables. The AAE trains with its draws alone; its
    density is what evaluation (importance sampling, AIS) needs."""

    def __init__(self, latent_dim: int, num_components: int, radius: float, scale: float, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.num_components, self.radius, self.scale = num_components, radius, scale
        angles = 2 * np.pi * np.arange(num_components) / num_components
        plane = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)[:, :latent_dim]
        self.locs = np.pad(plane, [(0, 0), (0, latent_dim - plane.shape[1])]).astype("float32")
        self.scales = np.where(np.arange(latent_dim) < 2, scale, 1.0).astype("float32") + np.zeros_like(self.locs)

    def distribution(self, posterior=None) -> tfd.Distribution:
        return gaussian_mixture(tf.zeros([self.num_components]), self.locs, self.scales)

    def marginals(self, posterior=None) -> tfd.Distribution:
        return mixture_marginals(tf.zeros([self.num_components]), self.locs, self.scales)
