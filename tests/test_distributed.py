"""Training on several devices: one update under MirroredStrategy on two logical CPU devices equals
the one-device update on the same data and seed, and so does a short run of the training stage
with `training.distribute`, on two devices of one process and on two worker processes."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.workers import is_chief

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
    assert run["uneven_batch"] == ("training.batch_size: 63 is not a multiple of the 2 replicas of "
                                   "training.distribute, which share each minibatch")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_train_the_weights_of_one_process(tmp_path):
    """`training.distribute: {strategy: multi_worker}`: two worker processes on 127.0.0.1 (the
    cluster in TF_CONFIG, one CPU replica each, each with half of every minibatch of 64) run the
    training stage's 3 epochs through `vae_tf.workers.fit_on_workers` and end with the weights
    of one process on the same global minibatches to float32 round-off, both workers with the
    same weights, the same curves; only the chief (worker 0) wrote anything (model, dvclive)."""
    def run(*args):
        return subprocess.Popen([sys.executable, "-m", "tests.worker_run", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    ports = ",".join(map(str, free_ports(2)))
    processes = [run("single", str(tmp_path / "single"))]
    processes[0].wait(timeout=300)
    processes += [run("worker", str(i), ports, str(tmp_path / f"worker{i}")) for i in range(2)]
    try:
        for process in processes:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err[-3000:]
    finally:
        for process in processes:
            process.kill()
    weights = {name: np.load(tmp_path / f"{name}.npz") for name in ("single", "worker0", "worker1")}
    one = weights["single"]
    assert len(one.files) == 8
    for name in ("worker0", "worker1"):
        assert max(float(np.max(np.abs(weights[name][k] - one[k]))) for k in one.files) < 1e-5  # 3e-8 measured
    histories = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("single", "worker0")}
    for key in ("loss", "val_elbo", "val_kl"):
        np.testing.assert_allclose(histories["worker0"][key], histories["single"][key], rtol=1e-5, err_msg=key)
    assert sorted(p.name for p in (tmp_path / "worker0").iterdir()) == ["live", "model.keras"]  # checkpoints removed at the end
    assert not (tmp_path / "worker1").exists()


class Strategy:
    """What `is_chief` reads of a strategy: its cluster resolver (None for a one-machine strategy)."""

    def __init__(self, cluster: dict, task_type: str, task_id: int):
        spec = tf.train.ClusterSpec(cluster)
        self.cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(spec, task_type=task_type, task_id=task_id)


@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
    ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, ("worker", 0), False),
    ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, ("chief", 0), True),
    ({}, ("worker", 0), True),  # no cluster: one worker
])
def test_the_chief_is_the_chief_task_or_else_worker_0(cluster, task, chief):
    assert is_chief(Strategy(cluster, *task)) is chief
    assert is_chief(tf.distribute.get_strategy())  # one device: this process writes
