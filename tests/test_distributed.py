"""Training on several devices: one update under MirroredStrategy on two logical CPU devices equals
the one-device update on the same data and seed, and so does a short run of the training stage
with `training.distribute`, on two devices of one process and on two worker processes."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from vae_tf.errors import ClusterError
from vae_tf.workers import cluster_config, is_chief

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


def worker_run(role: str, *args, log: Path) -> subprocess.Popen:
    """`python -m tests.worker_run role args...`, its output into `log` (a file, not a pipe: two
    workers wait on each other, and one blocked on a full pipe would hang both)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.worker_run", role, *map(str, args)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)


def single_run(folder: Path) -> dict:
    """The one-process run's final weights (`tests.worker_run single`)."""
    log = folder.with_suffix(".log")
    assert worker_run("single", folder, log=log).wait(timeout=300) == 0, log.read_text()[-3000:]
    return dict(np.load(folder.with_suffix(".npz")))


def two_workers(tmp_path: Path, name: str, *options) -> list[tuple[int, str]]:
    """Workers 0 and 1 of a cluster on 127.0.0.1 (`tests.worker_run worker`), in folders
    `<name>0` and `<name>1`: each one's exit code and output."""
    ports = ",".join(map(str, free_ports(2)))
    logs = [tmp_path / f"{name}{i}-{len(list(tmp_path.glob(f'{name}{i}-*.log')))}.log" for i in range(2)]
    processes = [worker_run("worker", i, ports, tmp_path / f"{name}{i}", *options, log=logs[i]) for i in range(2)]
    try:
        return [(process.wait(timeout=300), log.read_text()) for process, log in zip(processes, logs)]
    finally:
        for process in processes:
            process.kill()


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and len(a) == 8
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.slow
def test_two_workers_train_the_weights_of_one_process(tmp_path):
    """`training.distribute: {strategy: multi_worker}`: two worker processes on 127.0.0.1 (the
    cluster in TF_CONFIG, one CPU replica each, each with half of every minibatch of 64) run the
    training stage's 3 epochs through `vae_tf.workers.fit_on_workers` and end with the weights
    of one process on the same global minibatches to float32 round-off, both workers with the
    same weights, the same curves; only the chief (worker 0) wrote anything (model, dvclive); no
    AutoGraph warning."""
    one = single_run(tmp_path / "single")
    for code, err in two_workers(tmp_path, "worker"):
        assert code == 0, err[-3000:]
        assert "AutoGraph" not in err, err[-3000:]  # 8 lines a worker, from agree's two lambdas on one line
    for name in ("worker0", "worker1"):
        assert max_difference(dict(np.load(tmp_path / f"{name}.npz")), one) < 1e-5  # 3e-8 measured
    histories = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("single", "worker0")}
    for key in ("loss", "val_elbo", "val_kl"):
        np.testing.assert_allclose(histories["worker0"][key], histories["single"][key], rtol=1e-5, err_msg=key)
    assert sorted(p.name for p in (tmp_path / "worker0").iterdir()) == ["live", "model.keras"]  # checkpoints removed at the end
    assert not (tmp_path / "worker1").exists()


@pytest.mark.slow
def test_workers_resume_together_from_the_chiefs_checkpoint(tmp_path):
    """Two workers killed after epoch 2 of 3: the chief's checkpoint holds epoch 2, the other
    worker wrote none. Restarted with the other worker's own (empty) checkpoint folder, both stop
    with an error naming the epochs they would resume from (not a hang, not a silent mix of
    trained and fresh weights); restarted with both reading the chief's folder, they finish with
    the weights of one uninterrupted process."""
    for code, err in two_workers(tmp_path, "run", "--kill-after", 2):
        assert code == 3, err[-3000:]
    backup = tmp_path / "run0" / "backup"
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 2
    assert not (tmp_path / "run1").exists()
    for code, err in two_workers(tmp_path, "run"):
        assert code == 1 and "the workers disagree on the epoch to resume from" in err and "[2, 0]" in err, err[-3000:]
    for code, err in two_workers(tmp_path, "run", "--backup", backup):
        assert code == 0, err[-3000:]
    one = single_run(tmp_path / "single")
    assert max_difference(dict(np.load(tmp_path / "run0.npz")), one) < 1e-5
    assert max_difference(dict(np.load(tmp_path / "run1.npz")), one) < 1e-5


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


@pytest.mark.parametrize(("text", "message"), [
    ("{garbage", "TF_CONFIG: not JSON (Expecting property name enclosed in double quotes"),
    ("[]", "TF_CONFIG: names no cluster"),
    ('{"cluster": {}}', "TF_CONFIG: names no cluster"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}',
     "TF_CONFIG: cluster job 'ps': training.distribute multi_worker runs 'chief' and 'worker' tasks only"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "TF_CONFIG: task.index: 2 is not one of 0..1, the tasks of cluster.worker"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "TF_CONFIG: task.type: 'chief' is not a job of the cluster (['worker'])"),
    ('{"cluster": {"worker": ["a"]}, "task": {"type": "worker"}}',
     "TF_CONFIG: cluster.worker: expected a list of 'host:port' addresses (one for chief), got ['a']"),
    ('{"cluster": {"chief": ["a:1", "b:2"], "worker": ["c:3"]}, "task": {"type": "worker"}}',
     "TF_CONFIG: cluster.chief: expected a list of 'host:port' addresses (one for chief), got ['a:1', 'b:2']"),
    # one worker at port 99999 trained on, alone, without a word
    ('{"cluster": {"worker": ["localhost:99999"]}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG: cluster.worker: 'localhost:99999': a port is 1 to 65535"),
])
def test_a_tf_config_that_names_no_cluster_this_worker_can_join_is_one_line(text, message):
    """TensorFlow answered these with tracebacks, or ('[]', no cluster) trained as one worker."""
    with pytest.raises(ClusterError) as err:
        cluster_config(text)
    assert str(err.value).startswith(message), str(err.value)


def test_a_tf_config_of_a_cluster_is_taken_as_it_is():
    text = '{"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]}, "task": {"type": "worker", "index": 1}}'
    assert cluster_config(text) == json.loads(text) and cluster_config(None) is None


def test_a_signal_exits_with_its_own_code_within_the_block_and_as_before_after_it():
    """`exiting_on`: the signal ends the process with its number as exit code, even while the
    process sleeps in C (as TensorFlow's cluster wait does); after the block, Python's own handler
    is back (SIGINT raises KeyboardInterrupt)."""
    # raise_signal: to this thread, whose Python handler then raises at once (os.kill to the process may
    # reach one of TensorFlow's threads, and the process end before the main thread sees it: CI, loaded)
    after = ("import signal\nfrom vae_tf.workers import exiting_on\nwith exiting_on(signal.SIGINT): pass\n"
             "try:\n    signal.raise_signal(signal.SIGINT)\nexcept KeyboardInterrupt:\n    print('interrupted')")
    within = "import os, signal, time\nfrom vae_tf.workers import exiting_on\nwith exiting_on(signal.SIGINT):\n" \
             "    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(60)\nprint('not ended')"
    ran = {name: subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
           for name, code in (("after", after), ("within", within))}
    assert (ran["within"].returncode, ran["within"].stdout) == (2, "")
    assert (ran["after"].returncode, ran["after"].stdout) == (0, "interrupted\n")


@pytest.mark.slow
def test_a_worker_whose_cluster_does_not_form_ends_with_one_line():
    """A peer that never starts: TensorFlow waits for it without end, deaf to SIGTERM (90 s and
    counting, before); after training.distribute.timeout_seconds the worker ends, its stderr
    naming the cluster and the setting, and exit code 2 (a user error's, where SIGKILL's -9 read as
    an out-of-memory kill)."""
    ports = free_ports(2)
    config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": 0}}
    code = "from vae_tf.workers import multi_worker_strategy; multi_worker_strategy(3)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CONFIG": json.dumps(config), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: training.distribute: the cluster of TF_CONFIG did not form within 3 s (training.distribute."
        f"timeout_seconds): start every worker of {json.dumps(config['cluster'])}, and check that each reaches "
        "the others' host:port")
