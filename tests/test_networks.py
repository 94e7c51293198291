"""The image networks of `model.network`: the decoder's layout is the one the likelihoods read,
and image networks are refused for data that are not images; dense layers beside x's features."""

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.errors import ParamsError
from vae_tf.networks import GatedDense, apply_beside, apply_to_leading, decoder, mlp

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


@pytest.mark.parametrize("gated", [False, True])
def test_apply_beside_is_the_network_on_x_broadcast_beside_each_draw(gated):
    """apply_beside splits the first layer's product (W_f f once per example): the same as the
    network on [f, v] with f copied under v's every leading index, to float32 rounding, values and
    gradients alike, with plain or gated layers."""
    network = mlp([7, 5], 3, "tanh", "net", gated)
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


def test_gated_dense_is_a_linear_map_gated_by_a_sigmoid():
    """h = (W x + b) * sigmoid(V x + c), [W V] and [b c] the layer's kernel and bias, in closed form."""
    layer = GatedDense(3)
    layer.build((None, 4))
    rng = np.random.default_rng(0)
    layer.kernel.assign(rng.normal(size=(4, 6)))
    layer.bias.assign(rng.normal(size=6))
    x = rng.normal(size=(5, 4)).astype(np.float32)
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    linear, gate = x @ kernel[:, :3] + bias[:3], x @ kernel[:, 3:] + bias[3:]
    np.testing.assert_allclose(layer(x).numpy(), linear / (1 + np.exp(-gate)), rtol=1e-5, atol=1e-6)


def test_a_gated_network_gates_every_hidden_layer_of_every_part_and_round_trips(tmp_path):
    """`model.network: {gated: true}`: the encoder's and decoder's hidden layers are `GatedDense`
    (twice a plain layer's weights), the output layers linear, and the `.keras` file gives the same
    model back."""
    import keras

    params = {"model": {"latent_dim": 2, "hidden_units": [8, 6], "network": {"kind": "mlp", "gated": True},
                        "likelihood": "gaussian"}}
    model = model_of(params, meta_for(5))
    for network in (model.posterior.network, model.likelihood.network):
        kinds = [type(layer).__name__ for layer in network.layers]
        assert kinds == ["GatedDense", "GatedDense", "Dense"]
    assert model.posterior.network.layers[0].kernel.shape == (5, 16)
    x = np.random.default_rng(1).uniform(size=(3, 5)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), rtol=1e-6)
