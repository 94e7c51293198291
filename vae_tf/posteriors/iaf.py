"""The inverse autoregressive flow posterior (Kingma et al. 2016)."""

from __future__ import annotations

from collections.abc import Sequence

from vae_tf.bijectors import autoregressive_chain
from vae_tf.networks import MaskedAutoregressive
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

    def __init__(self, latent_dim: int, hidden_units: Sequence[int], activation: str, num_steps: int,
                 context_dim: int, made_units: Sequence[int], **kwargs):
        self.context_dim, self.made_units = context_dim, tuple(made_units)
        super().__init__(latent_dim, hidden_units, activation, num_steps, **kwargs)
        self.steps = [MaskedAutoregressive(made_units, activation, name=f"made_{t}") for t in range(num_steps)]

    @classmethod
    def from_params(cls, params, context):
        return cls(context.latent_dim, context.hidden_units, context.activation, params.num_steps, params.context_dim,
                   params.made_units, architecture=context.architecture, name="posterior")

    @property
    def extra_outputs(self) -> int:
        return self.context_dim

    def build(self, input_shape):
        super().build(input_shape)
        for step in self.steps:
            step.build([(None, self.latent_dim), (None, self.context_dim)])

    def flow(self, extra) -> tfb.Bijector:
        return autoregressive_chain(self.steps, self.latent_dim, context=extra, invert=True)

    def get_config(self):
        return {**super().get_config(), "context_dim": self.context_dim, "made_units": list(self.made_units)}
