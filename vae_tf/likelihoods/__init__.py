"""Likelihoods p(x|z) (decoders): a params class per kind in `params`, a layer per kind in a module of its own.

The layers register in `LIKELIHOODS` (see `base`) and load when one of the names below is first
asked for (`vae_tf.lazy`), so that `params` is read without TensorFlow."""

from vae_tf.lazy import layers_on_demand

__all__ = ["LIKELIHOODS", "Likelihood", "BernoulliLikelihood", "CategoricalLikelihood", "GaussianLikelihood",
           "PixelCategorical"]
__getattr__ = layers_on_demand(__name__, {"LIKELIHOODS": "base", "Likelihood": "base", "BernoulliLikelihood": "bernoulli",
                                          "CategoricalLikelihood": "categorical", "PixelCategorical": "categorical",
                                          "GaussianLikelihood": "gaussian"})
