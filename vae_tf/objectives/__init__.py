"""Objectives, one module per kind, registered in `OBJECTIVES` (see `base`); the bounds they are
made of are pure functions in `bounds`."""

from vae_tf.objectives.aae import AAE
from vae_tf.objectives.avb import AVB, Discriminator
from vae_tf.objectives.base import OBJECTIVES, Objective
from vae_tf.objectives.elbo import ELBO, KLWarmup
from vae_tf.objectives.iwae import IWAE

__all__ = ["AAE", "AVB", "ELBO", "IWAE", "OBJECTIVES", "Discriminator", "KLWarmup", "Objective"]
