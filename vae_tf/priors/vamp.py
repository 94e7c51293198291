"""The VampPrior: a mixture of the posterior at learnt pseudo-inputs (Tomczak & Welling 2018)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from vae_tf.errors import ParamsError
from vae_tf.priors.base import PRIORS, Prior
from vae_tf.priors.mixture import GaussianMixture, mixture_marginals
from vae_tf.tfp import tfd


@PRIORS.register("vamp")
class VampPrior(Prior):
    """p(z) = (1/C) sum_c q(z|u_c), the posterior at C learnt pseudo-inputs u_c [C, D] (in the
    encoder's input space), at the start C training images drawn without replacement (`init:
    data`, by `adapt`) or uniform draws in [0, 1] (`init: random`). p(z) is a function of the
    encoder too: its gradients reach the pseudo-inputs and the encoder's weights (and DReG gives
    the encoder this explicit term besides its path term). For a Gaussian q its log-density takes
    matrix products (`GaussianMixture`)."""

    context_fields = (*Prior.context_fields, "data_dim")

    def __init__(self, latent_dim: int, data_dim: int, num_components: int, init: str, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.num_components, self.data_dim, self.init = num_components, data_dim, init
        self.pseudo_inputs = self.add_weight(shape=(num_components, data_dim), name="pseudo_inputs",
                                             initializer=keras.initializers.RandomUniform(0.0, 1.0))

    @classmethod
    def from_params(cls, params, context):
        """Refuses more pseudo-inputs than the data's training images under `init: data`, where
        the data's description knows how many (`resolve` does this before any run)."""
        cls.refuse_more_than(params.num_components, params.init, context.meta.sizes.get("train"))
        return super().from_params(params, context)

    @staticmethod
    def refuse_more_than(num_components: int, init: str, num_images) -> None:
        if init == "data" and num_images is not None and num_components > num_images:
            raise ParamsError(f"model.prior.num_components: {num_components} distinct pseudo-inputs cannot start as "
                              f"the {num_images} training images (init: data); lower it to {num_images} at most, "
                              "or set init: random")

    def adapt(self, h, seed: int) -> None:
        """`init: data`: u_c = C distinct training images of h [N, D], drawn without replacement
        (C > N refused)."""
        self.refuse_more_than(self.num_components, self.init, len(h))
        if self.init == "data":
            rows = np.random.default_rng(seed).choice(len(h), self.num_components, replace=False)
            self.pseudo_inputs.assign(tf.gather(h, rows))

    def distribution(self, posterior) -> tfd.Distribution:
        components = posterior.distribution(tf.convert_to_tensor(self.pseudo_inputs))  # batch [C], event [L]
        return GaussianMixture(tfd.Categorical(logits=tf.zeros([self.num_components])), components)

    def marginals(self, posterior) -> tfd.Distribution:
        """Mixtures over c of the Gaussians with q(z_j|u_c)'s moments (exact for a Gaussian q)."""
        mean, scale = posterior.moments(tf.convert_to_tensor(self.pseudo_inputs), tf.constant([0, 0]))
        return mixture_marginals(tf.zeros([self.num_components]), mean, scale)
