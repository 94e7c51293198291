"""A new posterior kind and a new prior kind, written as a contributor would, to show what a kind
takes: one params class (which declares what the kind offers the other parts: `PosteriorParams`)
and one layer class, both registered under the kind's name. Here both are in this one file; in the
package, the params class goes to its part's `params` module (which must not import TensorFlow)
and the layer to a module of its own beside it, named in the `kinds` of its part's `__init__`.
The layer's constructor takes its params' fields by name and keeps each as an attribute of that
name (`vae_tf.registry.Part` derives `from_params` and `get_config` from them; the shared
settings, `latent_dim` and the like, come from the part's base class). Nothing else changes: the
factory builds them from params, the contract tests (`test_contracts.py`) check them, and every
objective and estimator uses them. Both have variables of their own besides any network, so
`test_roles.py` uses them to check that every variable gets the gradient its estimator promises."""

from typing import Literal

import tensorflow as tf

from vae_tf.posteriors import MIN_SCALE, POSTERIORS, Posterior
from vae_tf.posteriors.params import KINDS as POSTERIOR_KINDS, PosteriorParams
from vae_tf.posteriors.gaussian import gaussian_draw
from vae_tf.networks import mlp
from vae_tf.priors import PRIORS, Prior
from vae_tf.priors.params import KINDS as PRIOR_KINDS, PriorParams
from vae_tf.tfp import Normal, tfd


@POSTERIOR_KINDS.register
class SharedScalePosteriorParams(PosteriorParams):
    kind: Literal["shared_scale"] = "shared_scale"


@POSTERIORS.register("shared_scale")
class SharedScalePosterior(Posterior):
    """q(z|x) = N(mu(x), diag s^2): the mean from an MLP, the scale s = softplus(v) + 1e-5 one
    learnt vector for every x."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.network = mlp(self.hidden_units, self.latent_dim, self.activation, name="mean_mlp")
        self.raw_scale = self.add_weight(shape=(self.latent_dim,), initializer="zeros", name="raw_scale")

    def build(self, input_shape):
        self.network.build(input_shape)

    def distribution(self, h):
        loc = self.network(h)
        return tfd.Independent(Normal(loc, tf.nn.softplus(self.raw_scale) + MIN_SCALE + tf.zeros_like(loc)), 1)

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine):
        return gaussian_draw(self.distribution(h), num_samples, seed, stop_density_gradient)


@PRIOR_KINDS.register
class LearnedGaussianPriorParams(PriorParams):
    kind: Literal["learned_gaussian"] = "learned_gaussian"


@PRIORS.register("learned_gaussian")
class LearnedGaussianPrior(Prior):
    """p(z) = N(m, diag s^2), m and s = exp(log_s) learnt."""

    def __init__(self, latent_dim, **kwargs):
        super().__init__(latent_dim, **kwargs)
        self.loc = self.add_weight(shape=(latent_dim,), initializer="zeros", name="loc")
        self.log_scale = self.add_weight(shape=(latent_dim,), initializer="zeros", name="log_scale")

    def distribution(self, posterior=None):
        return tfd.Independent(Normal(tf.convert_to_tensor(self.loc), tf.exp(self.log_scale)), 1)
