"""Posteriors q(z|x): a params class per kind in `params`, a layer per kind in a module of its own.

The layers register in `POSTERIORS` (see `base`) and load when one of the names below is first
asked for (`vae_tf.lazy`), so that `params` is read without TensorFlow."""

from vae_tf.lazy import layers_on_demand

__all__ = ["MIN_SCALE", "POSTERIORS", "Draw", "Posterior", "Proposal", "Refine", "fitted_gaussian", "sample_moments"]
__getattr__ = layers_on_demand(__name__, {"MIN_SCALE": "base", "POSTERIORS": "base", "Draw": "base", "Posterior": "base",
                                          "Proposal": "base", "Refine": "base", "fitted_gaussian": "fitted",
                                          "sample_moments": "fitted"})
