"""Training on several devices: one update under MirroredStrategy on two logical CPU devices equals
the one-device update on the same data and seed, and so does a short run of the training stage
with `training.distribute`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_one_update_on_two_replicas_equals_the_one_device_update():
    """Each replica draws its rows of the global minibatch's noise and scales its loss by the global
    weight, and the strategy sums the gradients: for the ELBO, IWAE with DReG and AVB (two
    optimizers), every variable ends within float32 round-off of the one-device update, which
    moves every variable (by up to the learning rate), and the tracked terms agree."""
    result = subprocess.run([sys.executable, "-m", "tests.mirrored_update", "update"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, run in json.loads(result.stdout).items():
        assert run["replicas"] == 2
        assert run["min_update"] > 1e-5, (name, run)  # every variable moved
        assert run["max_difference"] < 1e-5, (name, run)  # 2e-7 measured
        for key, (one, two) in run["metrics"].items():
            np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5, err_msg=f"{name} {key}")


@pytest.mark.slow
def test_training_stage_on_two_replicas_matches_one_device():
    """`training.distribute: {strategy: mirrored, devices: [/cpu:0, /cpu:1]}`: 3 epochs of the
    training stage (12 updates, the last minibatch of each epoch half padding, so one replica's
    share is empty; validation split too; early stopping, checkpoints and dvclive as always) end
    with the weights of the one-device run to float32 round-off, and log the same curves."""
    result = subprocess.run([sys.executable, "-m", "tests.mirrored_update", "stage"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout.splitlines()[-1])  # after the stage's progress lines
    assert run["max_difference"] < 1e-5, run  # 3e-8 measured
    for key, (one, two) in run["history"].items():
        np.testing.assert_allclose(two, one, rtol=1e-5, err_msg=key)
