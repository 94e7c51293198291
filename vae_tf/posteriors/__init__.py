"""Posteriors q(z|x), one module per kind, registered in `POSTERIORS` (see `base`)."""

from vae_tf.posteriors import gaussian, hierarchical, iaf, implicit, planar  # noqa: F401  (registers the kinds)
from vae_tf.posteriors.base import MIN_SCALE, POSTERIORS, Draw, Posterior, Proposal, Refine
from vae_tf.posteriors.fitted import fitted_gaussian, sample_moments

__all__ = ["MIN_SCALE", "POSTERIORS", "Draw", "Posterior", "Proposal", "Refine", "fitted_gaussian", "sample_moments"]
