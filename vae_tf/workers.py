"""Training across workers (`tf.distribute.MultiWorkerMirroredStrategy`): the loop Keras' `fit`
cannot run there, the input split by replica, and which worker writes.

Keras 3's `fit` fails under this strategy (keras #20585: it reduces each scalar metric of a step
with `strategy.reduce("MEAN", value, axis=0)`, and before the first step it reduces a whole
input batch across the workers). `fit_on_workers` is the same epoch loop over `strategy.run`
of the model's own `train_step` and `test_step`, driving the same Keras callbacks with the same
logs: the trackers' values read across every replica (`SyncOnRead` sums), validation as `val_*`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
from typing import Optional

import keras
import tensorflow as tf

from vae_tf.errors import ClusterError, TrainingError

CLUSTER_FORM = ('{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}} '
                "(a \"chief\" job of one address besides, optionally)")

# Run beside a worker while it joins its cluster (`multi_worker_strategy`): TensorFlow blocks there,
# holding the GIL and deaf to SIGTERM, until every worker answers, so only another process can end
# the wait: after the timeout, the message on the worker's stderr and SIGINT to the worker, which
# `exiting_on` makes end it with exit code 2 (a user error's; SIGKILL's -9 read as an OOM kill).
WATCHDOG = """
import os, signal, sys, time
worker, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(seconds)
if os.getppid() == worker:
    print(message, file=sys.stderr, flush=True)
    os.kill(worker, signal.SIGINT)
"""


@contextlib.contextmanager
def exiting_on(signum: int):
    """Within the block, signal `signum` ends this process at once with exit code `signum`: libc's
    `_exit` is its C handler, which runs where a Python handler never would (TensorFlow's C++
    holding the GIL). Ctrl-C ends a wait for the cluster too. The previous handler is restored after."""
    libc = ctypes.CDLL(None)
    libc.signal.restype, libc.signal.argtypes = ctypes.c_void_p, (ctypes.c_int, ctypes.c_void_p)
    previous = libc.signal(signum, ctypes.cast(libc._exit, ctypes.c_void_p))
    try:
        yield
    finally:
        libc.signal(signum, previous)


def cluster_config(text: Optional[str]) -> Optional[dict]:
    """`TF_CONFIG` (its text; None where it is not set: one worker), checked as
    `MultiWorkerMirroredStrategy` needs it, else `ClusterError` naming what is wrong: a cluster
    of `chief` (one address at most) and `worker` jobs of "host:port" addresses, and this task, one
    of them. TensorFlow itself fails on these with tracebacks, or trains as one worker."""
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ClusterError(f"TF_CONFIG: not JSON ({err}); expected {CLUSTER_FORM}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError(f"TF_CONFIG: names no cluster; expected {CLUSTER_FORM}, or no TF_CONFIG to train as one "
                           "worker")
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise ClusterError(f"TF_CONFIG: cluster job {job!r}: training.distribute multi_worker runs 'chief' and "
                               "'worker' tasks only")
        if not (isinstance(addresses, list) and addresses and len(addresses) <= (1 if job == "chief" else 10**4)
                and all(isinstance(a, str) and re.fullmatch(r"[^\s:/]+:\d{1,5}", a) for a in addresses)):
            raise ClusterError(f"TF_CONFIG: cluster.{job}: expected a list of 'host:port' addresses (one for chief), "
                               f"got {addresses!r}")
        for address in addresses:
            if not 1 <= int(address.rsplit(":", 1)[1]) <= 65535:
                raise ClusterError(f"TF_CONFIG: cluster.{job}: {address!r}: a port is 1 to 65535")
    task = config.get("task")
    kind = task.get("type") if isinstance(task, dict) else None
    if kind not in cluster:
        raise ClusterError(f"TF_CONFIG: task.type: {kind!r} is not a job of the cluster ({sorted(cluster)})")
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[kind]):
        raise ClusterError(f"TF_CONFIG: task.index: {index!r} is not one of 0..{len(cluster[kind]) - 1}, the tasks "
                           f"of cluster.{kind}")
    return config


def multi_worker_strategy(timeout_seconds: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """The strategy of the cluster of `TF_CONFIG` (checked, `cluster_config`), once every worker
    answers; a worker still waiting after `timeout_seconds` is ended with one line naming the
    cluster and exit code 2 (by `WATCHDOG`)."""
    config = cluster_config(os.environ.get("TF_CONFIG"))
    if config is None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    message = (f"error: training.distribute: the cluster of TF_CONFIG did not form within {timeout_seconds:g} s "
               f"(training.distribute.timeout_seconds): start every worker of {json.dumps(config['cluster'])}, "
               "and check that each reaches the others' host:port")
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(timeout_seconds), message])
    try:
        with exiting_on(signal.SIGINT):
            return tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        watchdog.kill()
        watchdog.wait()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except for a worker of a multi-worker
    cluster other than its chief (the task `chief`, or `worker` 0 where there is none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not jobs:
        return True
    chief = "chief" if "chief" in jobs else "worker"
    return resolver.task_type == chief and resolver.task_id == 0


def by_replica(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy, batch_size: int):
    """The global minibatches of `dataset` ((x [batch_size, D], weights [batch_size]) elements,
    the same on every worker) split by replica: replica r (of R, numbered worker by worker) gets
    rows [r b, (r + 1) b) of each, b = batch_size / R, which is how `vae_tf.replicas` splits the
    noise. Every worker reads the whole data set and keeps its replicas' rows."""
    replicas = strategy.num_replicas_in_sync
    size = batch_size // replicas

    def of_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def rows(x, weights):
            starts = tf.data.Dataset.range(first * size, (first + local) * size, size)
            return starts.map(lambda s: (x[s:s + size], weights[s:s + size]))

        return dataset.flat_map(rows)

    return strategy.distribute_datasets_from_function(of_worker)


def agree(strategy: tf.distribute.Strategy, value: int, what: str) -> None:
    """Raise `TrainingError` unless every worker holds the same `value` (say, the epoch it resumes
    from): a worker that disagrees would run other steps than the others and hang their collectives."""
    def held():  # named, not two lambdas on one line: AutoGraph could not parse those (8 warning lines a worker)
        return tf.constant([value])

    @tf.function
    def gathered():
        return strategy.gather(strategy.run(held), axis=0)

    values = gathered().numpy().tolist()
    if len(set(values)) > 1:
        raise TrainingError(f"the workers disagree on {what}: {values} (replica by replica)")


def fit_on_workers(model: keras.Model, strategy: tf.distribute.Strategy, train_set, train_steps: int, val_set,
                   epochs: int, initial_epoch: int, callbacks: list) -> keras.callbacks.History:
    """What `model.fit(train_set, steps_per_epoch=train_steps, validation_data=val_set, epochs=epochs,
    callbacks=callbacks)` does, for a model built in `strategy.scope()` and distributed data sets
    (`by_replica`): per epoch, `train_steps` updates, then one pass over `val_set`, the
    callbacks called as `fit` calls them, starting at `initial_epoch` (a resumed run's)."""
    history = keras.callbacks.History()
    hooks = keras.callbacks.CallbackList([*callbacks, history], model=model, epochs=epochs, steps=train_steps)

    @tf.function
    def results():
        return {tracker.name: tracker.result() for tracker in model.metrics}

    @tf.function
    def train_step(iterator):
        strategy.run(model.train_step, args=(next(iterator),))
        return results()

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    model.stop_training = False
    hooks.on_train_begin()
    iterator, logs = iter(train_set), {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        for step in range(train_steps):
            hooks.on_train_batch_begin(step)
            hooks.on_train_batch_end(step, train_step(iterator))
        logs = {name: float(value) for name, value in results().items()}
        model.reset_metrics()
        for batch in val_set:
            test_step(batch)
        logs |= {f"val_{name}": float(value) for name, value in results().items()}
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return history
