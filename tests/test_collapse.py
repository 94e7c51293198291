"""Posterior collapse of the VampPrior on a small binarized set, said and avoided.

The study's short-budget VampPrior setting (300-300 tanh, L = 40, Adam 1e-3, 500 pseudo-inputs
from images, no KL warm-up) was seen to stay at the pixel-marginal model on binarized MNIST from
epoch 1 (KL 0, no active unit). The same happens on scikit-learn's digits drawn at 28 x 28 (thin
strokes on a blank page, as MNIST's) within two epochs, at lr 1e-3 or 5e-4, pseudo-inputs from
images or uniform, 50 or 500 of them; relu, leaky_relu and the papers' gated layers do not
collapse, nor does tanh with a 10-epoch KL warm-up (3 epochs are not enough).
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from vae_tf.config import Params
from vae_tf.data import Meta, Prepared
from vae_tf.training import train

SIDE = 28


@pytest.fixture(scope="module")
def strokes():
    """The 1797 digits resized to 28 x 28, intensities in [0, 1]: 1500 to train on (binarized
    afresh every step), the rest binarized once to validate on."""
    images = load_digits().images.astype(np.float32)[..., None] / 16.0
    rows = np.clip(tf.image.resize(images, [SIDE, SIDE]).numpy().reshape(len(images), -1), 0.0, 1.0)
    val = (np.random.default_rng(0).uniform(size=rows[1500:].shape) < rows[1500:]).astype(np.float32)
    meta = Meta(source="digits at 28 x 28", preprocessing="dynamic_binarize", representation="binary", n_levels=2,
                image_shape=(SIDE, SIDE, 1), dimension=SIDE * SIDE, dynamic_binarization=True, sizes={})
    return Prepared(train=rows[:1500], val=val, test=val[:10], meta=meta)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["mlp", {"kind": "mlp", "gated": True}], ids=["tanh", "gated"])
def test_a_vampprior_of_tanh_layers_collapses_and_says_so_where_gated_layers_do_not(
        strokes, tmp_path, monkeypatch, capsys, network):
    monkeypatch.chdir(tmp_path)
    params = Params.model_validate({
        "data": {"preprocessing": "dynamic_binarize"},
        "model": {"latent_dim": 40, "hidden_units": [200, 200], "activation": "tanh", "network": network,
                  "likelihood": "bernoulli", "prior": {"kind": "vamp", "num_components": 500}},
        "training": {"epochs": 6, "batch_size": 100, "optimizer": "adam", "learning_rate": 0.001}})
    history = train(params, strokes, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    summary = json.loads((tmp_path / "live" / "metrics.json").read_text())
    if network == "mlp":  # today's setting: q(z|x) = p(z) whatever x from the second epoch on
        assert history.history["val_active_units"][1:] == [0] * 5 and max(history.history["val_kl"][1:]) < 0.1
        assert summary["posterior_collapse"].startswith("posterior collapse: 0 of 40 units active")
        assert "posterior collapse" in capsys.readouterr().out.splitlines()[-1]
    else:
        assert min(history.history["val_active_units"]) >= 20 and min(history.history["val_kl"]) > 1.0
        assert summary["posterior_collapse"] == ""
