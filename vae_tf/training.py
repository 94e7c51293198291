"""Training: the model built from params, the input pipeline, callbacks, and `fit`."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import resource
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from dvclive import Live
from dvclive.keras import DVCLiveCallback

from vae_tf import workers
from vae_tf.collapse import CollapseWatch
from vae_tf.config import Params, TrainingParams
from vae_tf.data import Meta, Prepared
from vae_tf.errors import ParamsError, TrainingError
from vae_tf.files import atomic_write, save_model
from vae_tf.heartbeat import Heartbeat
from vae_tf.models import build_model, uses_xla


def set_determinism(seed: int, jit_compile: bool) -> None:
    """Same seed, same numbers: seeds Python, NumPy and TF. Without XLA it also turns on TF's
    op determinism; with XLA it cannot (Keras then silently drops XLA), and XLA on CPU is
    deterministic by itself (checked by the determinism test)."""
    keras.utils.set_random_seed(seed)
    if not jit_compile:
        tf.config.experimental.enable_op_determinism()


def minibatches(x: np.ndarray, batch_size: int, fused_steps: Optional[int], seed: int | None,
                first_epoch: int = 0) -> tuple[tf.data.Dataset, int]:
    """A dataset of (x [steps, batch, D], weights [steps, batch]) elements, up to `fused_steps`
    minibatches each, and the number of elements that make one epoch. With `fused_steps` None,
    one minibatch per element, (x [batch, D], weights [batch]): what a distribution strategy
    splits across its replicas.

    Every example is used once per epoch; the last minibatch is padded to `batch_size` with
    weight-0 rows, so shapes stay static for XLA. With a `seed` (training) the dataset repeats
    from `first_epoch` on, so that Keras keeps one iterator for the whole `fit` (and prefetches
    one element, so the next shuffle overlaps validation); epoch e's order is a function of
    (seed, e) alone, so a run resumed at epoch e sees the minibatches the uninterrupted run saw.
    Without (validation) it is one epoch in order, computed once: Keras makes a new iterator for
    every validation, and that of a repeating dataset was measured to be slow to delete (tens of
    ms, every other epoch).
    """
    n_minibatches = math.ceil(len(x) / batch_size)
    steps_per_epoch = math.ceil(n_minibatches / min(fused_steps or 1, n_minibatches))

    def fuse(dataset):
        return dataset if fused_steps is None else dataset.batch(min(fused_steps, n_minibatches))

    def pad(batch):
        missing = batch_size - tf.shape(batch)[0]
        weights = tf.concat([tf.ones(tf.shape(batch)[:1]), tf.zeros([missing])], 0)
        return tf.pad(batch, [[0, missing], [0, 0]]), weights

    if seed is None:
        batches = fuse(tf.data.Dataset.from_tensor_slices(x).batch(batch_size).map(pad))
        in_order = functools.reduce(tf.data.Dataset.concatenate, map(tf.data.Dataset.from_tensors, batches))
        return in_order, steps_per_epoch
    examples = tf.constant(x)

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(tf.range(len(x)), seed=tf.stack([tf.cast(seed, tf.int64), e]))
        return fuse(tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
                    .map(lambda rows: pad(tf.gather(examples, rows))))

    return tf.data.Dataset.counter(first_epoch).flat_map(epoch).prefetch(1), steps_per_epoch


BURDA_STEPS = 8  # Burda et al. 2015, section 5: 3^i passes at 10^(-i/7) times the rate, i = 0..7 (3280 passes)


def burda_rate(learning_rate: float):
    """The IWAE paper's schedule as a function of the epoch (from 0): learning_rate x 10^(-i/7)
    during the 3^i epochs that follow the first 3^0 + ... + 3^(i-1) = (3^i - 1) / 2; past the
    3280 epochs of i = 7, the last rate. For `keras.callbacks.LearningRateScheduler`."""
    def rate(epoch: int, current=None) -> float:
        step = next((i for i in range(BURDA_STEPS) if epoch < (3 ** (i + 1) - 1) // 2), BURDA_STEPS - 1)
        return learning_rate * 10.0 ** (-step / 7)

    return rate


class Checkpoint(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` every `every_epochs` epochs, with the state of `early_stopping` (best
    value, wait, best weights) saved beside the weights, so a resumed run stops and restores
    exactly as an uninterrupted one would (Keras' `EarlyStopping` starts afresh in every `fit`).
    List it after `early_stopping` in the callbacks.

    A kill can come while a checkpoint is written (Keras writes its weights file in place, and a
    truncated one cannot be read back). So each checkpoint is written whole into its own folder,
    `epoch-<N>/`, and only then named by `training_metadata.json` (replaced atomically): the
    metadata always names a complete checkpoint, and older or unfinished folders are removed.
    With `write` False (a worker that is not the chief) it only restores.

    A checkpoint also holds dvclive's folder `live_dir` as it was at its epoch (`live/`: the curves
    so far), so that the folder alone resumes the run, on a fresh clone of the repository too
    (`restore_live`). List it after the `DVCLiveCallback`, so that its epoch is in the copy."""

    def __init__(self, backup_dir: Path, every_epochs: int, early_stopping: keras.callbacks.EarlyStopping,
                 live_dir: Path, write: bool = True):
        super().__init__(str(backup_dir), delete_checkpoint=write)
        self.every_epochs, self.early_stopping, self.write = every_epochs, early_stopping, write
        self.live_dir = Path(live_dir)

    def _folder(self, epoch: int) -> Path:
        return Path(self.backup_dir) / f"epoch-{epoch}"

    def on_train_begin(self, logs=None):
        metadata = Path(self._training_metadata_path)
        epoch = json.loads(metadata.read_text())["epoch"] if metadata.exists() else 0
        folder = self._folder(epoch)
        self._weights_path = str(folder / "weights.weights.h5")
        super().on_train_begin(logs)
        if epoch:
            es, state = self.early_stopping, json.loads((folder / "early_stopping.json").read_text())
            es.wait, es.best, es.best_epoch = state["wait"], state["best"], state["best_epoch"]
            if state["has_best_weights"]:
                with np.load(folder / "early_stopping_best.npz") as saved:
                    es.best_weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        if self.write and self._current_epoch % self.every_epochs == 0:
            self._save_model()

    def _save_model(self):
        es, folder = self.early_stopping, self._folder(self._current_epoch)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.model.save_weights(folder / "weights.weights.h5")
        if es.best_weights is not None:
            np.savez(folder / "early_stopping_best.npz", *es.best_weights)
        state = {"wait": es.wait, "best": None if es.best is None else float(es.best), "best_epoch": es.best_epoch,
                 "has_best_weights": es.best_weights is not None}
        (folder / "early_stopping.json").write_text(json.dumps(state))
        if self.live_dir.exists():
            shutil.copytree(self.live_dir, folder / "live")
        metadata = {"epoch": self._current_epoch, "batch": 0}
        atomic_write(Path(self._training_metadata_path), lambda path: path.write_text(json.dumps(metadata)))
        for old in Path(self.backup_dir).glob("epoch-*"):
            if old != folder:
                shutil.rmtree(old)


def peak_memory_mb() -> float:
    """The process's peak resident memory so far (ru_maxrss; Linux reports KiB), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress(keras.callbacks.Callback):
    """One line per epoch on stdout (what `dvc repro` shows of a stage), at most one every
    `every_seconds` but always the first, the last and the first of a collapse: the epoch, the
    validation value of what early stopping watches (`monitor`: the bound), the time per epoch and
    `watch`'s note of a posterior collapse; within an epoch that runs longer than
    `PROGRESS_SECONDS` (a first one that compiles a large model), the step it is at
    (`vae_tf.heartbeat`: `heartbeat`, a context the caller holds around `fit`, so that it stops
    when training raises too). List it after `EpochTime` and `watch`."""

    def __init__(self, epochs: int, monitor: str, watch: CollapseWatch, every_seconds: float = 10.0):
        super().__init__()
        self.epochs, self.monitor, self.watch, self.every_seconds = epochs, monitor, watch, every_seconds
        self.epoch, self.steps_done = 0, 0
        self.heartbeat = Heartbeat(self._status)

    def _status(self) -> str:
        steps = self.params.get("steps")
        return f"epoch {self.epoch + 1}/{self.epochs}: {self.steps_done}{'/' + str(steps) if steps else ''} steps done"

    def on_train_begin(self, logs=None):
        self.last_print = -math.inf

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.steps_done = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = batch + 1

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now, last = time.perf_counter(), epoch + 1 == self.epochs or self.model.stop_training
        collapse_begins = self.watch.collapsed_epochs == self.watch.patience
        if last or collapse_begins or now - self.last_print >= self.every_seconds:
            value = logs.get(f"val_{self.monitor}", math.nan)
            print(f"epoch {epoch + 1}/{self.epochs}: validation {self.monitor} {value:.2f}, "
                  f"{logs.get('epoch_seconds', math.nan):.3f} s/epoch"
                  f"{'; ' + self.watch.note if self.watch.note else ''}", flush=True)
            self.last_print = now
        self.heartbeat.said()


class EpochTime(keras.callbacks.Callback):
    """Adds `epoch_seconds` to the epoch logs: wall time from the end of the previous epoch (the
    start of training for the first), so validation and the callbacks listed before it count."""

    def on_train_begin(self, logs=None):
        self.last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        if logs is not None:
            logs["epoch_seconds"] = now - self.last
        self.last = now


def _fingerprint(params: Params, meta: Meta) -> dict:
    """What a checkpoint depends on: a checkpoint made under other settings is not resumed."""
    return {"seed": params.seed, "model": params.model.model_dump(mode="json"),
            "objective": params.objective.model_dump(mode="json"),
            "training": params.training.model_dump(mode="json"), "data": asdict(meta)}


def _prepare_backup(backup_dir: Path, fingerprint: dict, write: bool = True) -> int:
    """Keep a checkpoint only if it was made with the same settings. Returns the epoch training
    resumes from (0: a fresh start). With `write` False (a worker that is not the chief) it only
    reads: the chief's call removes a checkpoint of other settings."""
    marker = backup_dir / "fingerprint.json"
    metadata = backup_dir / "training_metadata.json"
    resumable = marker.exists() and json.loads(marker.read_text()) == json.loads(json.dumps(fingerprint))
    if write:
        if not resumable and backup_dir.exists():
            shutil.rmtree(backup_dir)
        atomic_write(marker, lambda path: path.write_text(json.dumps(fingerprint, indent=2)))
    return json.loads(metadata.read_text())["epoch"] if resumable and metadata.exists() else 0


def restore_live(backup_dir: Path, epoch: int, live_dir: Path) -> None:
    """dvclive's folder as the checkpoint of `epoch` in `backup_dir` holds it (`Checkpoint`):
    the curves of the epochs before it, from which the resumed run logs on. What was there is
    replaced: points of epochs past the checkpoint, or a summary a kill cut short."""
    saved = Path(backup_dir) / f"epoch-{epoch}" / "live"
    shutil.rmtree(live_dir, ignore_errors=True)
    if saved.exists():
        shutil.copytree(saved, live_dir)


def strategy_of(params: Params) -> tf.distribute.Strategy:
    """`training.distribute`'s strategy; without one, the default (one device). A multi-worker
    strategy must be made before TensorFlow runs its first operation."""
    d = params.training.distribute
    if d is None:
        return tf.distribute.get_strategy()
    if d.strategy == "multi_worker":
        strategy = workers.multi_worker_strategy(d.timeout_seconds)
    else:
        workers.cluster_config(os.environ.get("TF_CONFIG"))  # TensorFlow reads it too, and fails on one not JSON
        strategy = tf.distribute.MirroredStrategy(list(_visible(d.devices)) if d.devices else None)
    if params.training.batch_size % strategy.num_replicas_in_sync:
        raise ParamsError(f"training.batch_size: {params.training.batch_size} is not a multiple of the "
                          f"{strategy.num_replicas_in_sync} replicas of training.distribute, which share each minibatch")
    return strategy


def _visible(devices: tuple[str, ...]) -> tuple[str, ...]:
    """`devices`, each checked to name a device of this machine, by its type and index alone (no
    job, replica or task), and no device twice under two names (`ParamsError` if not)."""
    visible = [tf.DeviceSpec.from_string(device.name) for device in tf.config.list_logical_devices()]
    named = {}
    for name in devices:
        try:
            spec = tf.DeviceSpec.from_string(name)
        except ValueError as err:
            raise ParamsError(f"training.distribute.devices: {name!r} is not a device name ({err})") from None
        if spec.job is not None or spec.replica is not None or spec.task is not None:
            raise ParamsError(f"training.distribute.devices: {name!r} names a job, replica or task; name the device "
                              "alone, e.g. /cpu:0 or /gpu:1 (several machines: strategy multi_worker)")
        device = ((spec.device_type or "").upper(), spec.device_index or 0)
        if device in named:
            raise ParamsError(f"training.distribute.devices: {named[device]!r} and {name!r} name the same device")
        named[device] = name
        if not any((v.device_type, v.device_index) == device for v in visible):
            raise ParamsError(f"training.distribute.devices: no device {name!r} here; visible: "
                              f"{[f'/{v.device_type.lower()}:{v.device_index}' for v in visible]}")
    return devices


def _ending(history, early_stopping, watch: CollapseWatch, t: TrainingParams, monitor: str) -> dict:
    """Why and where training ended, as dvclive's summary keeps it: `epochs_run`, `stopped_by`
    ("patience": no better validation bound in `early_stopping_patience` epochs; "cap": the epoch
    budget), `best_epoch` and `best_val_<monitor>`, the epoch whose weights are kept (a run that
    ends before early stopping starts watching, within the KL warm-up, keeps its last weights),
    and `watch`'s `posterior_collapse` (its note, "" if none; the active units reach the summary
    through dvclive's logger, eval/active_units).
    Raises `TrainingError` if the loss became NaN."""
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TrainingError(
            f"training stopped at epoch {history.epoch[-1] + 1}: the loss became {losses[-1]} "
            f"(training.learning_rate={t.learning_rate}); lower the learning rate or check the data. "
            "No model was saved."
        )
    ended = history.epoch[-1] + 1
    watched = early_stopping.best is not None
    return {"epochs_run": ended, "stopped_by": "patience" if early_stopping.stopped_epoch else "cap",
            "best_epoch": early_stopping.best_epoch + 1 if watched else ended,
            f"best_val_{monitor}": float(early_stopping.best if watched else history.history[f"val_{monitor}"][-1]),
            "posterior_collapse": watch.note}


def _report_end(ending: dict, t: TrainingParams, monitor: str) -> None:
    """The line saying why training ended."""
    why = "the epoch budget" if ending["stopped_by"] == "cap" else \
        f"early stopping (no better validation {monitor} in {t.early_stopping_patience} epochs)"
    collapse = f"; {ending['posterior_collapse']}" if ending["posterior_collapse"] else ""
    print(f"training ended at epoch {ending['epochs_run']}/{t.epochs} by {why}; kept the weights of epoch "
          f"{ending['best_epoch']}, validation {monitor} {ending[f'best_val_{monitor}']:.2f}{collapse}", flush=True)


def _summarize(live: Live, history, ending: dict, resume_epoch: int) -> None:
    """dvclive's summary of the run (`dvclive/<run>/metrics.json`): `_ending`'s figures (the bound
    is the ELBO, or L_K for iwae), and the run's resumption, time and memory."""
    live.summary.update(ending)
    live.summary["resumed_from_epoch"] = resume_epoch  # 0: one uninterrupted process
    live.summary["seconds_per_epoch_median"] = float(np.median(history.history["epoch_seconds"]))
    live.summary["peak_memory_mb"] = peak_memory_mb()


def train(params: Params, data: Prepared, model_path: Path, live_dir: Path, backup_dir: Path,
          extra_callbacks: list[keras.callbacks.Callback] = ()) -> keras.callbacks.History:
    """Fit the model params describe and save it to `model_path` (.keras). Resumes from `backup_dir` if a run with
    the same settings was interrupted there. Raises `TrainingError` if the loss becomes NaN.

    Across workers (`training.distribute.strategy: multi_worker`) every worker runs this with the
    same params and data; only the chief writes (the model, checkpoints, dvclive), and every
    worker resumes from `backup_dir`, which must then be where each reads the chief's."""
    strategy = strategy_of(params)  # first: a multi-worker strategy must precede any TF operation
    set_determinism(params.seed, uses_xla(params))
    chief, replicas = workers.is_chief(strategy), strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_model(params, data.meta)
    model.adapt(data.train)  # a resumed run then loads its checkpoint's weights over this
    t = params.training
    # Under a strategy, one minibatch per step (split across the replicas), else `steps_per_execution` fused.
    fused = None if t.distribute else t.steps_per_execution
    resume_epoch = _prepare_backup(Path(backup_dir), _fingerprint(params, data.meta), write=chief)
    if resume_epoch and chief:
        restore_live(Path(backup_dir), resume_epoch, Path(live_dir))
    val_batch = math.ceil(min(len(data.val), 1024) / replicas) * replicas  # padded to a share per replica
    train_set, train_steps = minibatches(data.train, t.batch_size, fused, seed=params.seed, first_epoch=resume_epoch)
    val_set, _ = minibatches(data.val, val_batch, fused, seed=None)
    early_stopping = keras.callbacks.EarlyStopping(
        monitor=f"val_{model.objective.monitor}", mode="max", patience=t.early_stopping_patience,
        restore_best_weights=True, start_from_epoch=model.objective.warmup_epochs)
    callbacks = [
        *model.objective.callbacks(),
        keras.callbacks.TerminateOnNaN(),
        *([keras.callbacks.LearningRateScheduler(burda_rate(t.learning_rate))] if t.schedule == "burda" else []),
        early_stopping,
    ]
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if multi_worker:
        workers.agree(strategy, resume_epoch, f"the epoch to resume from (the checkpoint in {backup_dir})")
    with Live(str(live_dir), resume=resume_epoch > 0, dvcyaml=False, save_dvc_exp=False) if chief else \
            contextlib.nullcontext() as live:
        # EpochTime after the others, so that its time includes their work (a checkpoint's write, after it,
        # falls in the next epoch's); Progress and the logger read it.
        watch = CollapseWatch(data.val)
        progress = Progress(t.epochs, model.objective.monitor, watch)
        callbacks += [EpochTime(), watch, progress]
        if chief:
            live.step = resume_epoch  # dvclive step = Keras epoch
            callbacks.append(DVCLiveCallback(live=live))
        callbacks += [Checkpoint(backup_dir, t.checkpoint_every_epochs, early_stopping, live_dir, write=chief),
                      *extra_callbacks]  # last: a test's stand-in for a kill comes once the epoch is done
        with progress.heartbeat:
            if multi_worker:
                history = workers.fit_on_workers(
                    model, strategy, workers.by_replica(train_set, strategy, t.batch_size), train_steps,
                    workers.by_replica(val_set, strategy, val_batch), t.epochs, resume_epoch, callbacks)
            else:
                history = model.fit(train_set, steps_per_epoch=train_steps, validation_data=val_set, epochs=t.epochs,
                                    callbacks=callbacks, verbose=0, shuffle=False)  # minibatches shuffles
        ending = _ending(history, early_stopping, watch, t, model.objective.monitor)
        _report_end(ending, t, model.objective.monitor)
        if chief:
            _summarize(live, history, ending, resume_epoch)
    if chief:
        save_model(model, Path(model_path))
    return history
