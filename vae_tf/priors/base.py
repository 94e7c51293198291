"""What every prior p(z) is: a Keras layer of role `generative`, registered by kind."""

from __future__ import annotations

from vae_tf.priors.params import KINDS
from vae_tf.registry import Part, Registry
from vae_tf.tfp import tfd

PRIORS = Registry(KINDS)


class Prior(Part):
    """p(z) over the latent space. A kind defines `distribution(posterior)`: a `tfd.Distribution`
    with event shape [L] (its `log_prob` and `sample` are the prior's), built on each call from the
    layer's variables, if it has any. It gets the model's posterior, for priors defined through
    the encoder (a VampPrior: p(z) = mean_c q(z|u_c)); others ignore it."""

    role = "generative"
    context_fields = ("latent_dim",)

    @property
    def uses_posterior(self) -> bool:
        """p(z) is a function of the posterior's variables (declared by its params class)."""
        return self.params_class.uses_posterior

    def __init__(self, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim

    def distribution(self, posterior) -> tfd.Distribution:
        raise NotImplementedError

    def adapt(self, h, seed: int) -> None:
        """Initialise what the prior takes from the training data h [N, D] (the networks' input);
        by default nothing."""

    def marginals(self, posterior) -> tfd.Distribution:
        """p(z_j) for each latent dimension j: a distribution of scalars with batch shape [L] (the
        per-dimension KL of evaluation). By default that of a factorised `tfd.Independent` p."""
        return self.distribution(posterior).distribution
