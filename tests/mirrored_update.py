"""One training update of a model on one device and under `tf.distribute.MirroredStrategy` on two
logical CPU devices, same data and seed, for each objective; and a short run of the training stage
(`vae_tf.training.train`) without and with `training.distribute`. Prints the largest difference
of any variable after each, as JSON. Run in its own process: logical devices must be set before
TensorFlow starts (tests/test_distributed.py)."""

import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.conftest import model_of  # noqa: E402
from vae_tf.config import Params  # noqa: E402
from vae_tf.data import DataParams, prepare  # noqa: E402
from vae_tf.errors import ParamsError  # noqa: E402
from vae_tf.training import strategy_of, train  # noqa: E402

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


class FinalWeights(keras.callbacks.Callback):
    """Keeps the trainable weights training ends with (the best epoch's, restored by early stopping)."""

    def on_train_end(self, logs=None):
        self.weights = [v.numpy() for v in self.model.trainable_variables]


class KillAfter(keras.callbacks.Callback):
    """Ends the process (exit code 3, as a kill would) once epoch `epoch` (from 1) has ended and
    the callbacks listed before this one (the checkpoint) have run."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            sys.stdout.flush()
            os._exit(3)


def stage_run(data, distribute, folder: Path, backup: Path | None = None, callbacks=()):
    """The final weights and history of 3 epochs of the training stage on 200 digits (4 minibatches
    of 64, the last padded: one replica's half of it is all padding), with `training.distribute`
    set to `distribute`, writing into `folder` (checkpoints every epoch, in `backup` if given).
    Without XLA on both sides: XLA's kernels round differently, and Adamax's first steps (about
    lr * sign(gradient)) turn a rounding difference in a near-zero gradient into one of lr."""
    params = Params.model_validate({
        "model": {"latent_dim": 2, "hidden_units": [16]},
        "training": {"epochs": 3, "batch_size": 64, "distribute": distribute, "jit_compile": False,
                     "checkpoint_every_epochs": 1}})
    small = replace(data, train=data.train[:200], val=data.val[:50], test=data.test[:10])
    final = FinalWeights()
    history = train(params, small, folder / "model.keras", folder / "live", backup or folder / "backup",
                    [*callbacks, final])
    return final.weights, history.history


def main():
    """`update`: one update per objective; `stage`: the training stage's run. Each in its own
    process (two MirroredStrategy objects over the same devices in one process clash in their
    collective ops)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    data = prepare(DataParams(), seed=0)
    if sys.argv[1:] == ["stage"]:
        with tempfile.TemporaryDirectory() as one_dir, tempfile.TemporaryDirectory() as two_dir:
            one, one_history = stage_run(data, None, Path(one_dir))
            two, two_history = stage_run(data, {"strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]},
                                         Path(two_dir))
        try:  # a minibatch that two replicas cannot share evenly
            strategy_of(Params.model_validate({"training": {"batch_size": 63, "distribute": {
                "strategy": "mirrored", "devices": ["/cpu:0", "/cpu:1"]}}}))
        except ParamsError as err:
            refusal = str(err)
        json.dump({"max_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)),
                   "history": {key: [one_history[key], two_history[key]] for key in ("loss", "val_elbo")},
                   "uneven_batch": refusal}, sys.stdout)
        return
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
