import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vae_tf.config import Params  # noqa: E402
from vae_tf.data import DataParams, prepare  # noqa: E402

TINY = {
    "model": {"latent_dim": 2, "hidden_units": [16]},
    "training": {"epochs": 3, "checkpoint_every_epochs": 1},
    "evaluation": {"num_samples": 20, "chunk_size": 8},
}


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
