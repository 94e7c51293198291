"""The params of `model.network`, by kind: what every part that sees x, and the decoder, is made of
(the layers: `vae_tf.networks`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vae_tf.sections import Kinds, PartParams, Units


class NetworkParams(PartParams):
    """What every kind has: `gated` makes each hidden dense layer h = (W x + b) * sigmoid(V x + c)
    (the gated MLPs of the VampPrior and Sylvester-flow papers; `model.activation` then applies
    to the other networks only: convolutions, MADEs). Left out of the resolved settings while
    false, so runs resolved before it existed keep their settings, and their kept rows."""

    gated: bool = Field(False, exclude_if=lambda gated: not gated)


KINDS = Kinds("model.network", "mlp", NetworkParams)


@KINDS.register
class MLPNetworkParams(NetworkParams):
    """Dense layers (model.hidden_units) on x as a row of its values."""

    kind: Literal["mlp"] = "mlp"


@KINDS.register
class ConvNetworkParams(NetworkParams):
    """x as an image: per entry of filters a convolution of stride 2 (kernel_size), then the dense
    layers (model.hidden_units); the decoder mirrors it with transposed convolutions."""

    kind: Literal["conv"] = "conv"
    filters: Units = Field((32, 64), min_length=1, max_length=8)
    kernel_size: int = Field(3, ge=1, le=15)


@KINDS.register
class ResNetNetworkParams(ConvNetworkParams):
    """As conv, each (transposed) convolution followed by blocks residual blocks."""

    kind: Literal["resnet"] = "resnet"
    blocks: int = Field(1, ge=1, le=32)
