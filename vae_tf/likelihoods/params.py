"""The likelihoods' params, one class per kind, read without TensorFlow (each layer: a module beside this)."""

from __future__ import annotations

from typing import Literal

from vae_tf.sections import Kinds, PartParams

KINDS = Kinds("model.likelihood", "categorical")


@KINDS.register
class CategoricalLikelihoodParams(PartParams):
    """Independent categoricals over each pixel's grey levels (data.preprocessing: levels)."""

    kind: Literal["categorical"] = "categorical"


@KINDS.register
class BernoulliLikelihoodParams(PartParams):
    """Independent Bernoullis (data.preprocessing: binarize or dynamic_binarize)."""

    kind: Literal["bernoulli"] = "bernoulli"


@KINDS.register
class GaussianLikelihoodParams(PartParams):
    """Independent Gaussians over intensities (data.preprocessing: scale)."""

    kind: Literal["gaussian"] = "gaussian"
