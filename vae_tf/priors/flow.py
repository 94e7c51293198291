"""The flow prior: a standard normal pushed through a learnt masked autoregressive flow."""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from vae_tf.bijectors import autoregressive_chain
from vae_tf.networks import MaskedAutoregressive, refuse_large_mades
from vae_tf.priors.base import PRIORS, Prior
from vae_tf.priors.mixture import mixture_marginals
from vae_tf.priors.standard_normal import standard_normal
from vae_tf.tfp import tfd

MARGINAL_DRAWS = 1024  # prior draws behind the kernel density estimate of its marginals
MARGINAL_SEED = (7, 13)


@PRIORS.register("flow")
class FlowPrior(Prior):
    """p(z) = N(e; 0, I) |det de/dz|, e = g^{-1}(z), g a masked autoregressive flow (MAF,
    Papamakarios et al. 2017) of `num_steps` steps, each its own MADE (no context), the order
    reversed between steps (`vae_tf.bijectors.autoregressive_chain`):
        log p(z) = log N(g^{-1}(z); 0, I) + sum_t log |det dg_t^{-1}/dy|,
    one MADE pass per step, a normalised density (TFP's `TransformedDistribution` adds each
    step's log-determinant once, over the whole event). Each step starts as the identity (the
    MADE's output layer starts at zero), so p starts as N(0, I). A draw takes L passes per step."""

    context_fields = (*Prior.context_fields, "activation")

    @classmethod
    def from_params(cls, params, context):
        refuse_large_mades("model.prior", params.num_steps, params.made_units, context.latent_dim)
        return super().from_params(params, context)

    def __init__(self, latent_dim: int, activation: str, num_steps: int, made_units: Sequence[int], **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.num_steps, self.made_units, self.activation = num_steps, tuple(made_units), activation
        self.steps = [MaskedAutoregressive(made_units, activation, name=f"made_{t}") for t in range(num_steps)]

    def build(self, input_shape):
        for step in self.steps:
            step.build((None, self.latent_dim))

    def distribution(self, posterior=None) -> tfd.Distribution:
        return tfd.TransformedDistribution(standard_normal(self.latent_dim),
                                           autoregressive_chain(self.steps, self.latent_dim))

    def marginals(self, posterior=None) -> tfd.Distribution:
        """p(z_j) has no closed form: a Gaussian kernel density estimate from `MARGINAL_DRAWS`
        draws of p (fixed seed), bandwidth h_j = 1.06 sd_j S^(-1/5) (Silverman's rule)."""
        draws = self.distribution().sample(MARGINAL_DRAWS, seed=tf.constant(MARGINAL_SEED))  # [S, L]
        bandwidth = 1.06 * tf.math.reduce_std(draws, axis=0) * MARGINAL_DRAWS ** -0.2
        return mixture_marginals(tf.zeros([MARGINAL_DRAWS]), draws, tf.broadcast_to(bandwidth, tf.shape(draws)))
