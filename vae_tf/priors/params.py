"""The priors' params, one class per kind, read without TensorFlow (each layer: a module beside this)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from vae_tf.sections import Kinds, PartParams, Units


class PriorParams(PartParams):
    """A prior's params; `uses_posterior`: p(z) is made of the posterior's density (VampPrior)."""

    uses_posterior: ClassVar[bool] = False


KINDS = Kinds("model.prior", "standard_normal", PriorParams)


@KINDS.register
class StandardNormalPriorParams(PriorParams):
    """p(z) = N(0, I), fixed."""

    kind: Literal["standard_normal"] = "standard_normal"


@KINDS.register
class MixturePriorParams(PriorParams):
    """A mixture of num_components diagonal Gaussians, weights, means and scales learnt."""

    kind: Literal["mixture"] = "mixture"
    num_components: int = Field(16, ge=1, le=10000)


@KINDS.register
class VampPriorParams(PriorParams):
    """The VampPrior: the posterior averaged over num_components learnt pseudo-inputs, which
    start as training images (init: data) or uniform draws in [0, 1] (init: random)."""

    kind: Literal["vamp"] = "vamp"
    uses_posterior: ClassVar[bool] = True
    num_components: int = Field(16, ge=1, le=10000)
    init: Literal["data", "random"] = "data"


@KINDS.register
class FlowPriorParams(PriorParams):
    """N(0, I) pushed through a masked autoregressive flow of num_steps steps (each a MADE with
    made_units hidden units), learnt."""

    kind: Literal["flow"] = "flow"
    num_steps: int = Field(2, ge=1, le=100)
    made_units: Units = Field((64, 64), min_length=1)


@KINDS.register
class RingPriorParams(PriorParams):
    """A fixed mixture of num_components Gaussians (standard deviation scale) evenly spaced on a
    circle of the given radius in the first two latent dimensions; N(0, 1) in any others."""

    kind: Literal["ring"] = "ring"
    num_components: int = Field(8, ge=1, le=10000)
    radius: float = Field(2.0, gt=0.0, le=1e6)
    scale: float = Field(0.3, gt=0.0, le=1e6)
