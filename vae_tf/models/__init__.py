"""The composed model (`vae`), its stochastic layers (`depth`) and the factory from params (`factory`)."""

from vae_tf.models.factory import OPTIMIZERS, build_model, build_parts, uses_xla
from vae_tf.models.vae import VAE, as_minibatches

__all__ = ["OPTIMIZERS", "VAE", "as_minibatches", "build_model", "build_parts", "uses_xla"]
