"""The inverse autoregressive flow posterior (Kingma et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence

from vae_tf.bijectors import autoregressive_chain
from vae_tf.networks import MaskedAutoregressive, refuse_large_mades
from vae_tf.posteriors.base import POSTERIORS
from vae_tf.posteriors.flow import FlowPosterior
from vae_tf.tfp import tfb


@POSTERIORS.register("iaf")
class IAFPosterior(FlowPosterior):
    """f = f_T o R o ... o R o f_1, R reversing the order of z's components, each step
        f_t(z)_i = (z_i - m_t(z_<i, c)) exp(-s_t(z_<i, c)),   log |det df_t/dz| = -sum_i s_t(z_<i, c),
    (m_t, s_t) a masked autoregressive network (`MaskedAutoregressive`) of its own, conditioned
    on a context c(x) the encoder emits (`context_dim` values). It is TFP's
    `Invert(MaskedAutoregressiveFlow)`: sampling is one pass, a density away from the draws
    (`distribution(h).log_prob`) L passes."""

    @classmethod
    def from_params(cls, params, context):
        refuse_large_mades("model.posterior", params.num_steps, params.made_units, context.latent_dim, params.context_dim)
        return super().from_params(params, context)

    def __init__(self, context_dim: int, made_units: Sequence[int], **kwargs):
        self.context_dim, self.made_units = context_dim, tuple(made_units)
        super().__init__(**kwargs)
        self.steps = [MaskedAutoregressive(made_units, self.activation, name=f"made_{t}")
                      for t in range(self.num_steps)]

    @property
    def extra_outputs(self) -> int:
        return self.context_dim

    def build(self, input_shape):
        super().build(input_shape)
        for step in self.steps:
            step.build([(None, self.latent_dim), (None, self.context_dim)])

    def flow(self, extra) -> tfb.Bijector:
        return autoregressive_chain(self.steps, self.latent_dim, context=extra, invert=True)
