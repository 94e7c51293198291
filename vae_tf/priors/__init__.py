"""Priors p(z), one module per kind, registered in `PRIORS` (see `base`)."""

from vae_tf.priors import flow, mixture, ring, vamp  # noqa: F401  (registers the kinds)
from vae_tf.priors.base import PRIORS, Prior
from vae_tf.priors.standard_normal import StandardNormalPrior, standard_normal

__all__ = ["PRIORS", "Prior", "StandardNormalPrior", "standard_normal"]
