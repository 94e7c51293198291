"""One training update of a model on one device and under `tf.distribute.MirroredStrategy` on two
logical CPU devices, same data and seed; prints the largest difference of any variable after it,
for each objective, as JSON. Run in its own process: logical devices must be set before
TensorFlow starts (tests/test_distributed.py)."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from tests.conftest import model_of  # noqa: E402
from vae_tf.data import DataParams, prepare  # noqa: E402

OBJECTIVES = {
    "elbo": {"objective": {"kind": "elbo", "num_samples": 3}},
    "iwae_dreg": {"objective": {"kind": "iwae", "num_samples": 4}},
    "avb": {"model": {"latent_dim": 2, "hidden_units": [16], "posterior": {"kind": "implicit", "noise_dim": 2,
                                                                          "moment_samples": 8}},
            "objective": {"kind": "avb", "discriminator_units": [16]}},
}


def update(params, data, strategy):
    """The trainable variables before and after one update on 8 digits, and the tracked terms."""
    with strategy.scope():
        model = model_of(params, data.meta)
    before = [v.numpy() for v in model.trainable_variables]
    dataset = tf.data.Dataset.from_tensors((data.train[:8], np.ones(8, np.float32)))
    model.fit(dataset, epochs=1, verbose=0)
    return before, [v.numpy() for v in model.trainable_variables], model.get_metrics_result()


def main():
    data = prepare(DataParams(), seed=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {}
    for name, overrides in OBJECTIVES.items():
        params = {"model": {"latent_dim": 2, "hidden_units": [16]}, "training": {"jit_compile": False}, **overrides}
        before, one, one_metrics = update(params, data, tf.distribute.get_strategy())
        _, two, two_metrics = update(params, data, strategy)
        out[name] = {"replicas": strategy.num_replicas_in_sync,
                     "min_update": min(float(np.max(np.abs(a - b))) for a, b in zip(one, before)),
                     "max_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)),
                     "metrics": {key: [float(one_metrics[key]), float(two_metrics[key])] for key in one_metrics}}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
