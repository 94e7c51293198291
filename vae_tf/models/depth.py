"""Depth: stochastic layers stacked above x, seen by the other parts as one joint latent.

z1 lies above x, z2 above z1, ..., zL at the top; the joint latent is z = [z1, ..., zL] (bottom
first, event shape [L1 + ... + LL]):

    p(x, z) = p(x|z1) p(z1|z2) ... p(z_{L-1}|z_L) p(z_L)        (`StackedPrior` is p(z); the
                                                                likelihood reads z1 alone)
    q(z|x)  = q(z1|x) q(z2|z1) ... q(z_L|z_{L-1})               (`StackedPosterior`, bottom-up,
                                                                the IWAE paper's inference)

Each q(z_l|z_{l-1}) is a posterior of any kind with an exact density, its input z_{l-1} in place of
x; each p(z_{l-1}|z_l) a diagonal Gaussian from an MLP; p(z_L) a prior of any kind not made of the
encoder. Both are TFP joint distributions (`JointDistributionSequential`, made one vector by
`joint_vector`), so log q, log p and their draws are TFP's, and every objective, importance
sampling, AIS and the export read them as they read one layer's. One layer is the stack of one:
the model then holds the plain parts, not a stack (its saved models stay as they were).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import keras
import tensorflow as tf

from vae_tf.networks import encoder
from vae_tf.posteriors.base import Draw, Posterior
from vae_tf.posteriors.fitted import MOMENT_SAMPLES, sample_moments
from vae_tf.posteriors.gaussian import diagonal_gaussian
from vae_tf.posteriors.params import PosteriorParams
from vae_tf.priors.base import Prior
from vae_tf.priors.mixture import mixture_marginals
from vae_tf.tfp import BatchReshape, tfb, tfd

MARGINAL_DRAWS = 256  # prior draws of z_{l+1} behind the mixture that is p(z_l)'s marginals
MARGINAL_SEED = (11, 17)


def conditional(distribution_of, below: tf.Tensor, width: int) -> tfd.Distribution:
    """`distribution_of(h)` (a part's distribution for inputs h [batch, D]) at inputs of any leading
    shape [..., D] (e.g. draws [K, batch, D]), D = `width`: flattened into one batch, batch shape
    restored."""
    flat = distribution_of(tf.reshape(below, [-1, width]))
    leading = below.shape[:-1]  # static where known: TFP then knows the batch shape while tracing
    return BatchReshape(flat, leading.as_list() if leading.is_fully_defined() else tf.shape(below)[:-1])


def joint_vector(joint: tfd.JointDistribution, sizes: Sequence[int], top_first: bool = False) -> tfd.Distribution:
    """A joint distribution over the parts z1, ..., zL as one vector [..., sum of `sizes`], bottom
    first (`top_first`: TFP's model lists them from the top)."""
    bijector = tfb.Invert(tfb.Split(list(sizes)))
    if top_first:
        bijector = tfb.Chain([bijector, tfb.Restructure(list(range(len(sizes) - 1, -1, -1)))])
    return tfd.TransformedDistribution(joint, bijector)


class StackParams(PosteriorParams):
    """What a stack of posteriors offers the other parts: an exact density (`Params` refuses
    layers without one), DReG where each layer has it (`StackedPosterior.draw`), no refinement."""

    kind: Literal["stacked"] = "stacked"


@keras.saving.register_keras_serializable(package="vae_tf")
class StackedPosterior(Posterior):
    """q(z|x) = q(z1|x) prod_l q(z_l|z_{l-1}): `stochastic_layers`, bottom first, each a posterior
    whose input is the layer below (x for the first). `latent_dims` are their sizes."""

    kind, params_class, part = "stacked", StackParams, "posterior"

    def __init__(self, stochastic_layers: Sequence, **kwargs):
        layers = [keras.saving.deserialize_keras_object(layer) if isinstance(layer, dict) else layer
                  for layer in stochastic_layers]
        bottom = layers[0]
        super().__init__(latent_dim=sum(layer.latent_dim for layer in layers), hidden_units=bottom.hidden_units,
                         activation=bottom.activation, architecture=bottom.architecture, **kwargs)
        self.stochastic_layers = layers
        self.latent_dims = tuple(layer.latent_dim for layer in layers)

    def build(self, input_shape):
        for layer, width in zip(self.stochastic_layers, (input_shape[-1], *self.latent_dims)):
            layer.build([None, width])

    def get_config(self):
        return {**keras.layers.Layer.get_config(self),
                "stochastic_layers": [keras.saving.serialize_keras_object(layer) for layer in self.stochastic_layers]}

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine) -> Draw:
        """K draws of z1 ~ q(z1|x), then one z_l ~ q(z_l|z_{l-1}) at each draw below, with each
        layer's own `draw`; log q is the sum of the layers' (TFP would give the same from
        `distribution`, without the kinds' own samplers). With `stop_density_gradient` (DReG),
        log q(z|x) is `distribution`'s with every weight of the stack held fixed (Keras'
        `StatelessScope` reading each variable as its stopped value): the upper layers' parameters
        are functions of the draws below, whose paths DReG keeps while it stops the weights."""
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, len(self.stochastic_layers)))
        first = self.stochastic_layers[0].draw(h, num_samples, seeds[0])
        parts, log_q = [first.z], first.log_q
        for layer, layer_seed, width in zip(self.stochastic_layers[1:], seeds[1:], self.latent_dims):
            below = parts[-1]
            leading = tf.shape(below)[:-1]
            step = layer.draw(tf.reshape(below, [-1, width]), 1, layer_seed)  # one draw at each draw below
            parts.append(tf.reshape(step.z[0], tf.concat([leading, [layer.latent_dim]], 0)))
            log_q += tf.reshape(step.log_q[0], leading)
        z = tf.concat(parts, axis=-1)
        if stop_density_gradient:
            refused = [layer.kind for layer in self.stochastic_layers if not layer.params_class.supports_dreg]
            if refused:
                raise NotImplementedError(f"the stack's {refused} posterior layers have no DReG form")
            held = [(variable, tf.stop_gradient(variable.value)) for variable in self.trainable_variables]
            with keras.StatelessScope(state_mapping=held):
                log_q = self.distribution(h).log_prob(z)
        return Draw(z, log_q, None)

    def distribution(self, h) -> tfd.Distribution:
        """The joint q(z|x) as TFP's: batch shape [batch], event shape [sum of latent_dims]."""
        def given_below(layer, width):  # q(z_l|z_{l-1}) as TFP's model takes it: a function of the part below
            return lambda below: conditional(layer.distribution, below, width)

        bottom, *upper = self.stochastic_layers
        model = [bottom.distribution(h), *map(given_below, upper, self.latent_dims)]
        return joint_vector(tfd.JointDistributionSequential(model), self.latent_dims)

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated from `MOMENT_SAMPLES` draws (the upper layers' have no closed form)."""
        return sample_moments(self.draw(h, MOMENT_SAMPLES, seed).z)


@keras.saving.register_keras_serializable(package="vae_tf")
class StackedPrior(Prior):
    """p(z) = p(z_L) prod_l p(z_l|z_{l+1}): `top`, a prior of any kind over z_L, and for each layer
    below it N(z_l | mu(z_{l+1}), diag sigma(z_{l+1})^2), an MLP of `hidden_units[l]` (the
    layer's own, which its posterior's network has too; gated if `gated`)."""

    kind, part = "stacked", "prior"

    def __init__(self, top, latent_dims: Sequence[int], hidden_units: Sequence[Sequence[int]], activation: str,
                 gated: bool = False, **kwargs):
        super().__init__(latent_dim=sum(latent_dims), **kwargs)
        self.top = keras.saving.deserialize_keras_object(top) if isinstance(top, dict) else top
        self.latent_dims, self.activation, self.gated = tuple(latent_dims), activation, gated
        self.hidden_units = tuple(tuple(units) for units in hidden_units)
        architecture = {"kind": "mlp", "gated": True} if gated else None
        self.conditionals = [encoder(architecture, units, 2 * size, activation, name=f"conditional_{level}")
                             for level, (size, units) in enumerate(zip(self.latent_dims[:-1], self.hidden_units))]

    @property
    def uses_posterior(self) -> bool:
        return False

    def build(self, input_shape):
        for network, above in zip(self.conditionals, self.latent_dims[1:]):
            network.build([None, above])
        self.top.build([None, self.latent_dims[-1]])

    def get_config(self):
        return {**keras.layers.Layer.get_config(self),
                "top": keras.saving.serialize_keras_object(self.top), "latent_dims": list(self.latent_dims),
                "hidden_units": [list(units) for units in self.hidden_units], "activation": self.activation,
                "gated": self.gated}

    def conditional(self, level: int, above: tf.Tensor) -> tfd.Distribution:
        """p(z_level|z_{level+1}) (levels from 0, the bottom) at z_{level+1} [..., L_{level+1}]."""
        return conditional(lambda h: diagonal_gaussian(self.conditionals[level](h)), above, self.latent_dims[level + 1])

    def distribution(self, posterior=None) -> tfd.Distribution:
        """The joint p(z), top first in TFP's model and bottom first in its one vector: batch shape
        [], event shape [sum of latent_dims]."""
        def given_above(level):  # p(z_level|z_{level+1}) as TFP's model takes it
            return lambda above: self.conditional(level, above)

        model = [self.top.distribution(posterior), *map(given_above, range(len(self.latent_dims) - 2, -1, -1))]
        return joint_vector(tfd.JointDistributionSequential(model), self.latent_dims, top_first=True)

    def marginals(self, posterior=None) -> tfd.Distribution:
        """p(z_j) for each coordinate of the joint latent: the top prior's own marginals, and below
        it, for z_l, the mixture over `MARGINAL_DRAWS` prior draws of z_{l+1} (fixed seed) of
        N(mu_j(z_{l+1}), sigma_j(z_{l+1})^2) (Monte Carlo, exact as the draws grow)."""
        draws = self.distribution(posterior).sample(MARGINAL_DRAWS, seed=tf.constant(MARGINAL_SEED))
        parts = tf.split(draws, list(self.latent_dims), axis=-1)
        below = []
        for level, above in enumerate(parts[1:]):
            q = self.conditional(level, above).distribution  # BatchReshape's: Independent(Normal), batch [draws]
            normal = q.distribution
            below.append(mixture_marginals(tf.zeros([MARGINAL_DRAWS]), normal.loc, normal.scale))
        return tfd.BatchConcat([*below, self.top.marginals(posterior)], axis=0)
