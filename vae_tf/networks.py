"""The networks inside the parts: multilayer perceptrons, the convolutional and residual image
networks in front of them (`model.network`), and the masked autoregressive network of
autoregressive flows.

A part that sees x gets x as a row of D = H * W * C values (`vae_tf.data`) and `model.network`
as a dict, its `architecture` = `{kind, gated, filters, kernel_size, blocks, image_shape}` (None:
a plain mlp):
- `mlp` (or None): dense layers on the row;
- `conv`: the row as the image, then per entry of `filters` a convolution of stride 2
  (`kernel_size`, "same" padding), flattened, then the dense layers;
- `resnet`: as `conv`, each convolution followed by `blocks` residual blocks.
With `gated` true (any kind) every hidden dense layer is a `GatedDense`. A decoder mirrors
this: dense layers, a dense projection to the smallest feature map,
transposed convolutions of stride 2 back to the image's size, and its values per pixel laid
out value-major, [k, D] flattened (what the likelihoods read)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from vae_tf.errors import ParamsError

IMAGE_KINDS = ("conv", "resnet")


@keras.saving.register_keras_serializable(package="vae_tf")
class GatedDense(keras.layers.Layer):
    """h = (W x + b) * sigmoid(V x + c) [..., units] (Dauphin et al. 2017; the MLPs of the
    VampPrior and Sylvester-flow papers), [W V] one kernel [in, 2 units]: Keras' `glu` of one
    product. `kernel`, `bias` and `activation` as a `Dense` has them, for `apply_beside`."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation = units, keras.activations.glu

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2 * self.units), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight(shape=(2 * self.units,), initializer="zeros", name="bias")

    def call(self, x):
        return self.activation(keras.ops.matmul(x, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def output_layer(units: int) -> keras.layers.Dense:
    """The linear layer that gives a part's distribution its parameters: float32 whatever the
    dtype policy, so that densities are computed in float32 under a mixed one (`mixed_bfloat16`,
    `benchmarks/bfloat16_epoch.py`; an image decoder's last transposed convolution is not made so)."""
    return keras.layers.Dense(units, dtype="float32")


def dense_layers(hidden_units: Sequence[int], activation: str, gated: bool = False) -> list[keras.layers.Layer]:
    """Hidden layers of `hidden_units`: `GatedDense` if `gated`, else dense with `activation`."""
    return [GatedDense(units) if gated else keras.layers.Dense(units, activation=activation) for units in hidden_units]


def mlp(hidden_units: Sequence[int], output_units: int, activation: str, name: str,
        gated: bool = False) -> keras.Sequential:
    """`dense_layers`, then a linear layer of `output_units`."""
    return keras.Sequential([*dense_layers(hidden_units, activation, gated), output_layer(output_units)], name=name)


def sees_images(architecture: Optional[dict]) -> bool:
    return architecture is not None and architecture["kind"] in IMAGE_KINDS


def gated(architecture: Optional[dict]) -> bool:
    """Whether `model.network` asks for gated dense layers (None: a plain MLP)."""
    return architecture is not None and architecture.get("gated", False)


@keras.saving.register_keras_serializable(package="vae_tf")
class ResidualBlock(keras.layers.Layer):
    """y = x + conv(a(conv(a(x)))), both convolutions of x's channels, stride 1 (He et al. 2016,
    pre-activation)."""

    def __init__(self, filters: int, kernel_size: int, activation: str, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.activation = filters, kernel_size, activation
        self.convolutions = [keras.layers.Conv2D(filters, kernel_size, padding="same") for _ in range(2)]

    def build(self, input_shape):
        for convolution in self.convolutions:
            convolution.build(input_shape)

    def call(self, x):
        h = x
        for convolution in self.convolutions:
            h = convolution(keras.activations.get(self.activation)(h))
        return x + h

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "activation": self.activation}


def _blocks(architecture: dict, filters: int, activation: str) -> list[keras.layers.Layer]:
    count = architecture["blocks"] if architecture["kind"] == "resnet" else 0
    return [ResidualBlock(filters, architecture["kernel_size"], activation) for _ in range(count)]


def image_features(architecture: Optional[dict], activation: str) -> list[keras.layers.Layer]:
    """The layers from a row [batch, D] to image features [batch, F]: none for an MLP."""
    if not sees_images(architecture):
        return []
    layers = [keras.layers.Reshape(tuple(architecture["image_shape"]))]
    for filters in architecture["filters"]:
        layers += [keras.layers.Conv2D(filters, architecture["kernel_size"], strides=2, padding="same",
                                       activation=activation), *_blocks(architecture, filters, activation)]
    return [*layers, keras.layers.Flatten()]


def encoder(architecture: Optional[dict], hidden_units: Sequence[int], output_units: int, activation: str,
            name: str) -> keras.Sequential:
    """x [batch, D] -> [batch, output_units]: the image features (if any), then `mlp`'s layers."""
    return keras.Sequential([*image_features(architecture, activation),
                             *dense_layers(hidden_units, activation, gated(architecture)),
                             output_layer(output_units)], name=name)


def trunk(architecture: Optional[dict], activation: str) -> Optional[keras.Sequential]:
    """The image features alone, for a part whose dense layers see x beside other inputs (None
    for an MLP, which sees x itself)."""
    layers = image_features(architecture, activation)
    return keras.Sequential(layers, name="image_trunk") if layers else None


def features(trunk: Optional[keras.Sequential], x) -> tf.Tensor:
    """What the dense layers of a part with a `trunk` see of x [batch, D]: x itself for an MLP."""
    return x if trunk is None else trunk(x)


def features_width(trunk: Optional[keras.Sequential], input_shape) -> int:
    """The width of `features` for x of `input_shape`, building the trunk."""
    if trunk is None:
        return input_shape[-1]
    trunk.build(input_shape)
    return trunk.compute_output_shape(input_shape)[-1]


def decoder(architecture: Optional[dict], hidden_units: Sequence[int], data_dim: int, values_per_pixel: int,
            activation: str, name: str) -> keras.Sequential:
    """z [batch, L] -> [batch, k * D], k = `values_per_pixel`, value-major (value j of pixel d at
    j * D + d)."""
    if not sees_images(architecture):
        return mlp(hidden_units, values_per_pixel * data_dim, activation, name, gated(architecture))
    height, width, channels = architecture["image_shape"]
    filters, size = list(architecture["filters"]), architecture["kernel_size"]
    smallest = [(height, width)]
    for _ in filters:
        smallest.append(tuple(math.ceil(side / 2) for side in smallest[-1]))
    (h, w), top = smallest[-1], filters[-1]
    layers = [*dense_layers(hidden_units, activation, gated(architecture)),
              keras.layers.Dense(h * w * top, activation=activation),
              keras.layers.Reshape((h, w, top))]
    for out in reversed(filters[:-1]):
        layers += [keras.layers.Conv2DTranspose(out, size, strides=2, padding="same", activation=activation),
                   *_blocks(architecture, out, activation)]
    k = values_per_pixel
    layers += [keras.layers.Conv2DTranspose(channels * k, size, strides=2, padding="same"),
               keras.layers.Cropping2D(((0, (2 ** len(filters)) * h - height), (0, (2 ** len(filters)) * w - width))),
               keras.layers.Reshape((height, width, channels, k)), keras.layers.Permute((4, 1, 2, 3)),
               keras.layers.Flatten()]
    return keras.Sequential(layers, name=name)


def apply_beside(layers: Sequence[keras.layers.Layer], f: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """Dense `layers` on [f, v] side by side, f [batch, F] the same under every leading index of
    v [..., batch, n] (x's features beside each of its draws): [..., batch, output units]. The
    first layer's product splits, W [f; v] + b = (W_f f + b) + W_v v, so W_f f is taken once per
    example rather than once per draw; for an MLP part f is x itself (784 values against a draw's
    few dozen), most of that layer's work."""
    first, width, leading = layers[0], f.shape[-1], tf.shape(v)[:-1]
    drawn = tf.reshape(tf.matmul(tf.reshape(v, [-1, v.shape[-1]]), first.kernel[width:]),
                       tf.concat([leading, first.kernel.shape[-1:]], 0))
    flat = tf.reshape(first.activation(drawn + (tf.matmul(f, first.kernel[:width]) + first.bias)), [-1, first.units])
    for layer in layers[1:]:
        flat = layer(flat)
    return tf.reshape(flat, tf.concat([leading, tf.shape(flat)[-1:]], 0))


def apply_to_leading(network, inputs: tf.Tensor, width: Optional[int] = None) -> tf.Tensor:
    """`network` (built for [batch, D]) on inputs of any leading shape [..., D] (e.g. [K, batch, D]),
    flattened into its batch and reshaped after: [..., output units]. `width`: D, where the
    inputs' static shape does not say it (TFP's draws of a joint distribution inside a loop)."""
    flat = network(tf.reshape(inputs, [-1, width or inputs.shape[-1]]))
    return tf.reshape(flat, tf.concat([tf.shape(inputs)[:-1], tf.shape(flat)[-1:]], 0))


# The most weights of a flow's MADEs, all its steps together (1 GiB; 4 with gradients and Adam's
# moments): the widths' own bound (`vae_tf.sections.MAX_HIDDEN_WEIGHTS`) is per network, and a flow
# has up to 100 of them, next to a latent space of up to 4096.
MAX_MADE_WEIGHTS = 2**28


def refuse_large_mades(where: str, num_steps: int, made_units: Sequence[int], latent_dim: int,
                       context_dim: int = 0) -> None:
    """Refuses `num_steps` MADEs (`MaskedAutoregressive`) of `made_units` on L = `latent_dim` values
    (and a context of `context_dim`) over `MAX_MADE_WEIGHTS` weights: (L + C) u_1 + sum_i u_i u_(i+1)
    + u_last 2L each."""
    u = list(made_units)
    weights = num_steps * ((latent_dim + context_dim) * u[0] + sum(a * b for a, b in zip(u, u[1:])) + u[-1] * 2 * latent_dim)
    if weights > MAX_MADE_WEIGHTS:
        raise ParamsError(f"{where}: {num_steps} steps of MADEs {u} on {latent_dim} latents would hold {weights:,} "
                          f"weights, over the {MAX_MADE_WEIGHTS:,} allowed ({MAX_MADE_WEIGHTS * 4 // 2**20} MiB); "
                          "take fewer steps or narrower MADEs")


@keras.saving.register_keras_serializable(package="vae_tf")
class MaskedAutoregressive(keras.layers.Layer):
    """MADE (Germain et al. 2015), conditioned on a context or not: (z [..., L], c [..., C] or
    None) -> (shift, log_scale) [..., L] each, output i a function of z_1..z_{i-1} (and c) only.

    Degrees: input i has i (1..L), each hidden unit one in 1..L-1 (cyclic); a hidden unit sees
    the inputs of degree <= its own, output i the hidden units of degree < i. The context feeds
    the first hidden layer unmasked. The output layer starts at zero: each step starts as the
    identity. (TFP's `AutoregressiveNetwork` is a tf_keras layer a Keras 3 model cannot track.)"""

    def __init__(self, hidden_units: Sequence[int], activation: str, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units, self.activation = tuple(hidden_units), activation

    def build(self, input_shape):
        """input_shape: z's shape, or the pair (z's, c's)."""
        conditioned = isinstance(input_shape[0], (tuple, list))
        (*_, latent), (*_, context) = input_shape if conditioned else (input_shape, (0,))
        degrees = [np.arange(1, latent + 1)]
        degrees += [np.arange(units) % max(1, latent - 1) + 1 for units in self.hidden_units]
        self.masks, self.kernels, self.biases = [], [], []
        for i, units in enumerate(self.hidden_units):
            self.masks.append((degrees[i + 1][None, :] >= degrees[i][:, None]).astype("float32"))
            self.kernels.append(self.add_weight(shape=(len(degrees[i]), units), initializer="glorot_uniform",
                                                name=f"kernel_{i}"))
            self.biases.append(self.add_weight(shape=(units,), initializer="zeros", name=f"bias_{i}"))
        self.context_kernel = (self.add_weight(shape=(context, self.hidden_units[0]), initializer="glorot_uniform",
                                               name="context_kernel") if context else None)
        output_mask = (np.arange(1, latent + 1)[None, :] > degrees[-1][:, None]).astype("float32")
        self.masks.append(np.concatenate([output_mask, output_mask], axis=1))
        self.kernels.append(self.add_weight(shape=(len(degrees[-1]), 2 * latent), initializer="zeros",
                                            name="kernel_out"))
        self.biases.append(self.add_weight(shape=(2 * latent,), initializer="zeros", name="bias_out"))

    def call(self, z, context=None):
        act = keras.activations.get(self.activation)
        h = z
        for i, (mask, kernel, bias) in enumerate(zip(self.masks, self.kernels, self.biases)):
            h = keras.ops.matmul(h, kernel * mask) + bias
            if i == 0 and context is not None:
                h = h + keras.ops.matmul(context, self.context_kernel)
            if i < len(self.hidden_units):
                h = act(h)
        shift, log_scale = keras.ops.split(h, 2, axis=-1)
        return shift, log_scale

    def get_config(self):
        return {**super().get_config(), "hidden_units": list(self.hidden_units), "activation": self.activation}
