"""Likelihoods p(x|z) (decoders), one module per kind, registered in `LIKELIHOODS` (see `base`)."""

from vae_tf.likelihoods.base import LIKELIHOODS, Likelihood
from vae_tf.likelihoods.bernoulli import BernoulliLikelihood
from vae_tf.likelihoods.categorical import CategoricalLikelihood, PixelCategorical
from vae_tf.likelihoods.gaussian import GaussianLikelihood

__all__ = ["LIKELIHOODS", "Likelihood", "BernoulliLikelihood", "CategoricalLikelihood", "GaussianLikelihood",
           "PixelCategorical"]
