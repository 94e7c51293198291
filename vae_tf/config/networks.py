"""The params of `model.network`, by kind: what every part that sees x, and the decoder, is made of
(the layers: `vae_tf.networks`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vae_tf.sections import Kinds, PartParams, Units

KINDS = Kinds("model.network", "mlp")


@KINDS.register
class MLPNetworkParams(PartParams):
    """Dense layers (model.hidden_units) on x as a row of its values."""

    kind: Literal["mlp"] = "mlp"


@KINDS.register
class ConvNetworkParams(PartParams):
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
