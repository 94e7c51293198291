"""Objectives: a params class per kind in `params`, a layer per kind in a module of its own.

The layers register in `OBJECTIVES` (see `base`) and load when one of the names below is first
asked for (`vae_tf.lazy`), so that `params` is read without TensorFlow. The bounds they are
made of are pure functions in `bounds`."""

from vae_tf.lazy import layers_on_demand

__all__ = ["AAE", "AVB", "ELBO", "IWAE", "OBJECTIVES", "Discriminator", "KLWarmup", "Objective"]
__getattr__ = layers_on_demand(__name__, {"AAE": "aae", "AVB": "avb", "Discriminator": "avb", "ELBO": "elbo",
                                          "KLWarmup": "warmup", "IWAE": "iwae", "OBJECTIVES": "base", "Objective": "base"})
