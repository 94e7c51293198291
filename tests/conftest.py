import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from vae_tf.config import Params  # noqa: E402
from vae_tf.data import DataParams, Meta, prepare  # noqa: E402
from vae_tf.tfp import tfd  # noqa: E402

import tests.example_parts  # noqa: E402, F401  (registers the example kinds before the contract tests are collected)

TINY = {
    "model": {"latent_dim": 2, "hidden_units": [16]},
    "training": {"epochs": 3, "checkpoint_every_epochs": 1},
    "evaluation": {"num_samples": 20, "chunk_size": 8, "proposal_samples": 20,
                   "ais": {"num_chains": 2, "num_steps": 10, "leapfrog_steps": 1, "step_size": 0.1}},
}


# The tiny AVB: an implicit posterior and the avb objective, on top of TINY.
TINY_AVB = {"model": {"latent_dim": 2, "hidden_units": [16], "posterior": {"kind": "implicit", "noise_dim": 2,
                                                                          "moment_samples": 8}},
            "objective": {"kind": "avb", "discriminator_units": [16]}}


def meta_for(dimension: int, representation: str = "continuous", n_levels=None, image_shape=None) -> Meta:
    """The description of prepared data of `dimension` pixels (rows, or images of `image_shape`),
    for models built outside a pipeline."""
    preprocessing = {"levels": "levels", "binary": "binarize", "continuous": "scale"}[representation]
    return Meta(source="test", preprocessing=preprocessing, representation=representation, n_levels=n_levels,
                image_shape=tuple(image_shape or (dimension,)), dimension=dimension, dynamic_binarization=False,
                sizes={})


def model_of(params: dict, meta: Meta):
    """The model `params` (merged onto the defaults) describe, built and compiled for `meta`."""
    import keras

    from vae_tf.models import build_model

    validated = Params.model_validate(params)
    keras.utils.set_random_seed(validated.seed)  # the same initial weights in every call
    return build_model(validated, meta)


def reseed(model, value: int) -> None:
    """Put the model's seed generator in a known state: its next draws repeat."""
    model.seed_generator.state.assign(np.array([value, 0], dtype=model.seed_generator.state.dtype))


@pytest.fixture(scope="session")
def digits():
    return prepare(DataParams(), seed=0)


@pytest.fixture(scope="session")
def tiny_params():
    return Params.model_validate(TINY)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, digits, tiny_params):
    """A tiny VAE trained for a few epochs on digits, and the folder it was trained in."""
    from vae_tf.training import train

    import keras

    root = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(root)  # dvclive looks for a git/DVC repository from the working directory
    try:
        train(tiny_params, digits, root / "model.keras", root / "live", root / "backup")
    finally:
        os.chdir(cwd)
    return keras.models.load_model(root / "model.keras"), root


@pytest.fixture
def rng():
    return np.random.default_rng(0)


class LinearGaussian:
    """Probabilistic PCA: z ~ N(0, I), x | z ~ N(W z + b, sigma^2 I), so p(x) = N(b, W W^T + sigma^2 I)
    and p(z|x) = N(C W^T (x - b) / sigma^2, C), C = (I + W^T W / sigma^2)^-1."""

    def __init__(self, rng, d=6, latent=2, sigma=0.5):
        self.w = rng.normal(size=(d, latent)).astype(np.float32)
        self.b = rng.normal(size=d).astype(np.float32)
        self.sigma, self.latent = sigma, latent
        self.posterior_cov = np.linalg.inv(np.eye(latent) + self.w.T @ self.w / sigma**2).astype(np.float32)

    def exact_log_likelihood(self, x):
        cov = self.w @ self.w.T + self.sigma**2 * np.eye(len(self.b))
        return tfd.MultivariateNormalTriL(self.b, np.linalg.cholesky(cov).astype(np.float32)).log_prob(x).numpy()

    def likelihood(self, z):
        loc = tf.einsum("...l,dl->...d", z, self.w) + self.b
        return tfd.Independent(tfd.Normal(loc, self.sigma), 1)

    def posterior_mean(self, x):
        return ((x - self.b) @ self.w @ self.posterior_cov.T / self.sigma**2).astype(np.float32)

    def exact_posterior(self, x):
        return tfd.MultivariateNormalTriL(self.posterior_mean(x), np.linalg.cholesky(self.posterior_cov))

    def proposal(self, shift, inflate):
        """A deliberately imperfect diagonal Gaussian around the exact posterior."""

        def posterior(x):
            mean = self.posterior_mean(x)
            scale = np.broadcast_to(inflate * np.sqrt(np.diag(self.posterior_cov)), mean.shape)
            return tfd.Independent(tfd.Normal(mean + shift, scale.astype(np.float32)), 1)

        return posterior
