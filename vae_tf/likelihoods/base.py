"""What every likelihood p(x|z) is: the decoder, a Keras layer of role `generative` that owns
the data representation it is a density for, registered by kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import tensorflow as tf

from vae_tf.errors import ParamsError
from vae_tf.likelihoods.params import KINDS
from vae_tf.networks import apply_to_leading, decoder, sees_images
from vae_tf.registry import Part, Registry
from vae_tf.tfp import tfd

LIKELIHOODS = Registry(KINDS)
# The most weights of a dense layer next to the data (1 GiB; 4 with gradients and Adam's moments):
# 28 x 28 pixels of 256 levels allow 1337 units there.
MAX_DATA_WEIGHTS = 2**28
# The data.preprocessing that gives each representation (see `vae_tf.data`).
PREPROCESSING = {"levels": "levels", "binary": "binarize or dynamic_binarize", "continuous": "scale"}


class Likelihood(Part):
    """p(x|z): a network (`vae_tf.networks.decoder`) from z to the raw parameters of a
    `tfd.Distribution` over x, event shape [D]: k values per pixel, value-major ([k, D] flattened).

    A kind defines `representation` (the data it is a density for; `accepts` lists every
    representation it can model), `values_per_pixel(n_levels)` (k), `distribution_of(raw)`,
    `parameters_of(raw)` (what the exported `decode` returns) and `valid(x)` (which values x may
    take). Networks see `network_input(x)`: the data as intensities in [0, 1].
    """

    role = "generative"
    context_fields = ("data_dim", "hidden_units", "activation", "n_levels", "architecture")
    representation: str
    accepts: tuple[str, ...]

    def __init__(self, data_dim: int, hidden_units: Sequence[int], activation: str,
                 n_levels: Optional[int] = None, architecture: Optional[dict] = None, **kwargs):
        super().__init__(**kwargs)
        self.data_dim, self.n_levels = data_dim, n_levels
        self.hidden_units, self.activation, self.architecture = tuple(hidden_units), activation, architecture
        self.network = decoder(architecture, hidden_units, data_dim, self.values_per_pixel(n_levels), activation,
                               name="decoder_mlp")

    @classmethod
    def from_params(cls, params, context):
        """Refuses data it is not a density for, naming the setting that would give the right data,
        and dense layers next to the data of over `MAX_DATA_WEIGHTS` weights (the decoder's last,
        D x k outputs, and the encoder's first; `vae_tf.sections.MAX_UNITS` bounds the others)."""
        meta = context.meta
        if meta.representation not in cls.accepts:
            raise ParamsError(
                f"model.likelihood: {cls.kind!r} needs {cls.representation} data, but data.preprocessing "
                f"{meta.preprocessing!r} gives {meta.representation} data; set data.preprocessing to "
                f"{PREPROCESSING[cls.representation]}")
        if not sees_images(context.architecture):
            k, units = cls.values_per_pixel(meta.n_levels), context.hidden_units
            for layer, weights in (("last", units[-1] * meta.dimension * k), ("first", units[0] * meta.dimension)):
                if weights > MAX_DATA_WEIGHTS:
                    raise ParamsError(
                        f"model.hidden_units: {list(units)} on {meta.dimension} pixels x {k} values each would give "
                        f"the {layer} dense layer {weights:,} weights, over the {MAX_DATA_WEIGHTS:,} allowed "
                        f"({MAX_DATA_WEIGHTS * 4 // 2**20} MiB); narrow that layer (or use fewer grey levels: "
                        "data.preprocessing)")
        return super().from_params(params, context)

    @staticmethod
    def values_per_pixel(n_levels: Optional[int]) -> int:
        raise NotImplementedError

    def build(self, input_shape):
        """Built for z1 [batch, L1]: the bottom layer of a joint latent [z1, ..., zL] (`vae_tf.models.depth`)."""
        self.network.build(input_shape)
        self.latent_dim = input_shape[-1]

    def call(self, z):
        """The raw network output for z [batch, L], of which p(x|z) reads z1, the first L1 values."""
        return self.network(self.bottom(z))

    def bottom(self, z) -> tf.Tensor:
        """z1 of a joint latent z [..., L]: z itself for one layer (sliced anyway, the digits AVB
        trained to other weights, its NLL 0.003 nats away)."""
        return z if z.shape[-1] == self.latent_dim else z[..., :self.latent_dim]

    def raw(self, z) -> tf.Tensor:
        """The raw output for z of any leading shape [..., L] (e.g. [K, batch, L]), flattened into
        one batch for the network and restored after."""
        return apply_to_leading(self, self.bottom(z), self.latent_dim)

    def distribution(self, z) -> tfd.Distribution:
        """p(x|z) for z [..., L]: batch shape [...], event shape [D]."""
        return self.distribution_of(self.raw(z))

    def parameters(self, z) -> dict[str, tf.Tensor]:
        return self.parameters_of(self.raw(z))

    def network_input(self, x) -> tf.Tensor:
        """x as the networks see it: intensities in [0, 1] (the identity but for grey levels)."""
        return x

    def check(self, x) -> tf.Tensor:
        """x, after an assertion that it is data this likelihood is a density for. A violation
        fails the call with InvalidArgumentError (a server answers 400)."""
        valid, rule = self.valid(x)
        valid &= tf.reduce_all(tf.math.is_finite(x))
        with tf.control_dependencies([tf.debugging.Assert(valid, [f"x: values must be {rule}"])]):
            return tf.identity(x)

    def valid(self, x) -> tuple[tf.Tensor, str]:
        """Whether every value of x is one this likelihood gives mass to, and that rule in words."""
        return tf.constant(True), "finite numbers"
