"""Params -> a model: each part built by its registry from its own params, then composed."""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from vae_tf.config import Params
from vae_tf.data import Meta
from vae_tf.errors import ParamsError
from vae_tf.likelihoods import LIKELIHOODS
from vae_tf.models.depth import StackedPosterior, StackedPrior
from vae_tf.models.vae import VAE
from vae_tf.networks import IMAGE_KINDS
from vae_tf.objectives import OBJECTIVES
from vae_tf.posteriors import POSTERIORS
from vae_tf.priors import PRIORS
from vae_tf.registry import Context
from vae_tf.sections import PartParams

OPTIMIZERS = {"adamax": keras.optimizers.Adamax, "adam": keras.optimizers.Adam,
              "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}


def architecture(network: PartParams, meta: Meta) -> Optional[dict]:
    """`model.network` as the parts take it (`vae_tf.networks`): None for a plain MLP; a gated
    MLP's fields; else its fields and the image shape, which must be (H, W, C)."""
    if network.kind not in IMAGE_KINDS:
        return network.model_dump(mode="json") if network.gated else None
    if len(meta.image_shape) != 3:
        raise ParamsError(f"model.network: {network.kind!r} needs images (height, width, channels), but "
                          f"data.source {meta.source!r} gives rows of {meta.dimension} values; use kind mlp")
    return {**network.model_dump(mode="json"), "image_shape": list(meta.image_shape)}


def build_parts(params: Params, meta: Meta) -> dict[str, keras.layers.Layer]:
    """The four parts params describe, for data described by `meta`. The likelihood refuses data
    it is no density for; that the parts fit one another, `Params` checked when it was read."""
    m = params.model
    context = Context(meta, m.latent_dim, m.hidden_units, m.activation, architecture(m.network, meta))
    # The likelihood first: its layers are created, and so initialised, in the order they have
    # always been (decoder, encoder, then anything else), so a seed gives the same weights.
    parts = {"likelihood": LIKELIHOODS.build(m.likelihood, context),
             "posterior": POSTERIORS.build(m.posterior, context)}
    if not m.upper_layers:
        parts["prior"] = PRIORS.build(m.prior, context)
    else:
        # The layers above z1 see vectors: MLPs, gated where the model's network is.
        upper = [Context(meta, layer.latent_dim, layer.hidden_units, m.activation,
                         {"kind": "mlp", "gated": True} if m.network.gated else None) for layer in m.upper_layers]
        parts["posterior"] = StackedPosterior(
            [parts["posterior"], *(POSTERIORS.build(layer.posterior, c) for layer, c in zip(m.upper_layers, upper))],
            name="posterior")
        parts["prior"] = StackedPrior(PRIORS.build(m.prior, upper[-1]), parts["posterior"].latent_dims,
                                      [layer.hidden_units for layer in m.upper_layers], m.activation,
                                      m.network.gated, name="prior")
    return {**parts, "objective": OBJECTIVES.build(params.objective, context)}


def uses_xla(params: Params) -> bool:
    """`training.jit_compile`, `auto` resolved: XLA, but not
    - under a distribution strategy (`training.distribute`: Keras' compiled step then reads a
      replica's variables from another device, which XLA refuses, on two logical CPU devices);
    - for image networks (conv, resnet) on a machine without a GPU, whose convolutions XLA
      compiles into code 5x (conv) to 20x (resnet) slower per training step than TensorFlow's
      own kernels (benchmarks/conv_images.py)."""
    t = params.training
    if t.jit_compile != "auto":
        return t.jit_compile
    if t.distribute is not None:
        return False
    return params.model.network.kind not in IMAGE_KINDS or bool(tf.config.list_physical_devices("GPU"))


def build_model(params: Params, meta: Meta) -> VAE:
    """The model params describe, built and compiled."""
    t = params.training
    model = VAE(**build_parts(params, meta), dynamic_binarization=meta.dynamic_binarization, seed=params.seed)
    model.build((None, meta.dimension))
    optimizer = OPTIMIZERS[t.optimizer]
    adversary_rate = params.objective.adversary_learning_rate
    model.compile(optimizer=optimizer(learning_rate=t.learning_rate),
                  adversary_optimizer=optimizer(learning_rate=adversary_rate) if adversary_rate else None,
                  jit_compile=uses_xla(params))
    return model
