"""The image networks of `model.network`: the decoder's layout is the one the likelihoods read,
and image networks are refused for data that are not images; dense layers beside x's features."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.errors import ParamsError
from vae_tf.networks import apply_beside, apply_to_leading, decoder, mlp

from tests.conftest import meta_for, model_of


@pytest.mark.parametrize("kind", ["conv", "resnet"])
def test_decoder_lays_out_each_pixels_values_value_major(kind):
    """With the last transposed convolution's kernel zero, its output is its bias b[c * k + j]
    (channel c, value j) at every pixel, and the decoder must put value j of pixel d = (row,
    column, c) at j * D + d: the layout `PixelCategorical` and the Gaussian likelihood read."""
    height, width, channels, k = 3, 5, 2, 4
    architecture = {"kind": kind, "filters": [4, 6], "kernel_size": 3, "blocks": 1,
                    "image_shape": [height, width, channels]}
    network = decoder(architecture, [8], height * width * channels, k, "relu", name="decoder")
    network.build((None, 2))
    last = next(layer for layer in reversed(network.layers) if layer.weights)
    bias = np.arange(channels * k, dtype=np.float32)
    last.kernel.assign(np.zeros(last.kernel.shape))
    last.bias.assign(bias)
    raw = network(np.random.default_rng(0).normal(size=(2, 2)).astype(np.float32)).numpy()
    channel_of_pixel = np.tile(np.arange(channels), height * width)  # row-major (row, column, channel)
    expected = np.stack([bias[channel_of_pixel * k + j] for j in range(k)]).reshape(-1)
    np.testing.assert_array_equal(raw, np.stack([expected, expected]))


def test_image_networks_need_images():
    params = {"model": {"latent_dim": 2, "hidden_units": [8], "network": "conv"}}
    with pytest.raises(ParamsError, match=r"model.network: 'conv' needs images \(height, width, channels\), "
                                          r"but data.source 'test' gives rows of 6 values"):
        model_of(params, meta_for(6))


def test_xla_by_default_but_for_image_networks_without_a_gpu():
    import tensorflow as tf

    from vae_tf.config import Params
    from vae_tf.models import uses_xla

    def xla(network, jit_compile="auto"):
        return uses_xla(Params.model_validate({"model": {"network": network},
                                               "training": {"jit_compile": jit_compile}}))

    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert xla("mlp") and xla("conv") == gpu and xla("resnet") == gpu
    assert xla("conv", True) and not xla("mlp", False)


def test_apply_beside_is_the_network_on_x_broadcast_beside_each_draw():
    """apply_beside splits the first layer's product (W_f f once per example): the same as the
    network on [f, v] with f copied under v's every leading index, to float32 rounding, values and
    gradients alike."""
    network = mlp([7, 5], 3, "tanh", "net")
    network.build((None, 6 + 4))
    f = tf.random.stateless_normal([2, 6], [0, 1])
    v = tf.random.stateless_normal([3, 5, 2, 4], [0, 2])  # leading [3, 5] over the batch of 2
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([f, v])
        beside = apply_beside(network.layers, f, v)
        copied = apply_to_leading(network, tf.concat([tf.broadcast_to(f, [3, 5, 2, 6]), v], axis=-1))
    assert beside.shape == (3, 5, 2, 3) and len(network.layers) == 3
    np.testing.assert_allclose(beside.numpy(), copied.numpy(), atol=1e-6)
    for of in (f, v, network.layers[0].kernel):
        np.testing.assert_allclose(tape.gradient(beside, of).numpy(), tape.gradient(copied, of).numpy(), atol=1e-5)
