"""A TensorFlow-Serving-compatible REST server for exported SavedModels (aiohttp).

    vae-tf serve --model-name vae --model-base-path export/vae [--host 127.0.0.1] [--port 8501]

Speaks TF Serving's REST API, so a client written against one works against the other:
    GET  /v1/models/<name>                         status of the served version
    GET  /v1/models/<name>/metadata                signatures: input/output names, dtypes, shapes
    POST /v1/models/<name>[/versions/<n>]:predict  {"signature_name": ..., "instances": [...]}
                                                   (row format -> {"predictions": ...}) or
                                                   {"signature_name": ..., "inputs": {...}}
                                                   (columnar -> {"outputs": ...})
As TF Serving (its default "latest" version policy), the newest loadable numeric version folder
under the base path is served; a newer one is picked up without a restart (polled every
`poll_seconds`), a folder that failed to load is tried again once its files change, and a
version removed from disk is no longer served. Every bad request gets a 4xx answer
{"error": "..."} naming the problem; work beyond `Limits` is refused (413), and requests beyond
the queue are answered 429 (Too Many Requests, as TF Serving answers RESOURCE_EXHAUSTED) at once
rather than queued without end.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import tensorflow as tf
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

log = logging.getLogger("vae_tf.serving")

# TF Serving's names for the dtypes a signature may use.
DTYPE_NAMES = {tf.float32: "DT_FLOAT", tf.float64: "DT_DOUBLE", tf.int32: "DT_INT32", tf.int64: "DT_INT64"}


class RequestError(Exception):
    """A client's mistake: answered with `status` and {"error": message}."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may wait:
    - `max_batch_size`: rows of a batched input;
    - `max_num_samples`: a scalar `num_samples` input (the rows `sample` draws, the importance
      samples per row of `log_likelihood`);
    - `max_seconds`: the predicted time of one request, from its rows x num_samples by the cost
      of `log_likelihood` measured when the version loaded (`calibrate`): the cost of the model's
      own work, so one budget holds for every exported kind on this machine;
    - `max_queue`: requests in progress at once (running or waiting for the model); past it a
      request is answered 429 at once, with Retry-After.
    Requests run in lanes by their predicted time, each lane its own threads: under
    `TINY_SECONDS` (a 1-row encode), under `SMALL_SECONDS`, and the rest one at a time; so a
    request never waits behind larger ones. A body over `INLINE_BODY` bytes is parsed, and an
    answer of over `INLINE_BODY` values written, on threads too, never on the event loop."""

    max_batch_size: int = 1024
    max_num_samples: int = 10000
    max_seconds: float = 10.0
    max_queue: int = 64


TINY_SECONDS, SMALL_SECONDS = 0.02, 0.25
INLINE_BODY = 2**16
CALIBRATION = ((4, 16), (32, 512))  # rows x importance samples of the two log_likelihood calls timed at load


@dataclass(frozen=True)
class Cost:
    """The predicted seconds of a request of `units` = rows x samples: `fixed` + `per_unit` x units."""

    fixed: float
    per_unit: float

    def seconds(self, units: int) -> float:
        return self.fixed + self.per_unit * units


@dataclass(frozen=True)
class Signature:
    """One signature of a loaded SavedModel: its function and input/output specs."""

    function: Any
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]

    @classmethod
    def of(cls, function) -> "Signature":
        return cls(function, dict(sorted(function.structured_input_signature[1].items())),
                   dict(sorted(function.structured_outputs.items())))

    def metadata(self) -> dict:
        def describe(spec: tf.TensorSpec) -> dict:
            dims = [{"size": str(d), "name": ""} for d in _shape(spec)]
            return {"dtype": DTYPE_NAMES.get(spec.dtype, spec.dtype.name), "tensor_shape": {"dim": dims, "unknown_rank": False},
                    "name": spec.name}

        return {"inputs": {name: describe(spec) for name, spec in self.inputs.items()},
                "outputs": {name: describe(spec) for name, spec in self.outputs.items()},
                "method_name": "tensorflow/serving/predict"}

    def convert(self, name: str, value: Any, limits: Limits) -> np.ndarray:
        """One JSON value -> an array of input `name`'s dtype and shape, or `RequestError`."""
        spec = self.inputs[name]
        try:
            array = np.asarray(value)
        except ValueError:
            raise RequestError(f"input {name!r}: ragged nested lists; expected shape {_shape(spec)}") from None
        if array.dtype.kind not in "iuf" or array.dtype == object:
            raise RequestError(f"input {name!r}: expected numbers ({DTYPE_NAMES.get(spec.dtype, spec.dtype.name)}), "
                               f"got {_json_kind(value)}")
        if spec.dtype.is_integer:
            if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
                raise RequestError(f"input {name!r}: expected integers ({DTYPE_NAMES[spec.dtype]})")
            info = np.iinfo(spec.dtype.as_numpy_dtype)
            if array.size and (array.min() < info.min or array.max() > info.max):
                raise RequestError(f"input {name!r}: out of range for {DTYPE_NAMES[spec.dtype]}")
        elif not np.all(np.isfinite(array)):
            raise RequestError(f"input {name!r}: NaN or infinite values are not valid data")
        array = array.astype(spec.dtype.as_numpy_dtype)
        if not spec.shape.is_compatible_with(array.shape):
            raise RequestError(f"input {name!r}: shape {list(array.shape)} does not match {_shape(spec)}")
        if array.ndim and array.shape[0] > limits.max_batch_size:
            raise RequestError(f"input {name!r}: batch of {array.shape[0]} exceeds max_batch_size {limits.max_batch_size}",
                               status=413)
        if name == "num_samples" and array.ndim == 0 and not 1 <= int(array) <= limits.max_num_samples:
            raise RequestError(f"input 'num_samples': {int(array)} is outside [1, max_num_samples = {limits.max_num_samples}]",
                               status=413 if int(array) > limits.max_num_samples else 400)
        return array


def _shape(spec: tf.TensorSpec) -> list:
    return [-1 if d is None else d for d in spec.shape.as_list()]


def _json_kind(value: Any) -> str:
    while isinstance(value, list) and value:
        value = value[0]
    return {str: "text", bool: "true/false", type(None): "null", dict: "an object", list: "an empty list"}.get(
        type(value), type(value).__name__)


def parse_inputs(body: Any, signature: Signature, limits: Limits) -> tuple[dict[str, np.ndarray], bool]:
    """A predict request's body -> (input arrays, row format?), as TF Serving reads it.

    Row format, {"instances": [...]}: one entry per example, a value (for a one-input signature)
    or an object of every input; the inputs are stacked along a new first axis, so every input
    must be batched. Columnar, {"inputs": {...}} (or a bare value for a one-input signature):
    whole tensors, scalars included.
    """
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    unknown = set(body) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise RequestError(f"unknown request keys {sorted(unknown)}; expected signature_name and instances or inputs")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("request needs exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    names = list(signature.inputs)
    if "inputs" in body:
        inputs = body["inputs"]
        if len(names) == 1 and not isinstance(inputs, dict):
            inputs = {names[0]: inputs}  # a one-input signature takes the bare tensor
        if not isinstance(inputs, dict):
            raise RequestError(f"'inputs' must be an object with keys {names}")
        _check_names(inputs, names)
        return {name: signature.convert(name, inputs[name], limits) for name in names}, False

    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError("'instances' must be a non-empty list")
    scalars = [name for name, spec in signature.inputs.items() if spec.shape.rank == 0]
    if scalars:
        raise RequestError(f"inputs {scalars} are scalars, which the row format ('instances') cannot express; "
                           "use the columnar format ('inputs')")
    if len(instances) > limits.max_batch_size:
        raise RequestError(f"batch of {len(instances)} instances exceeds max_batch_size {limits.max_batch_size}", status=413)
    if all(isinstance(instance, dict) for instance in instances):
        for instance in instances:
            _check_names(instance, names)
        columns = {name: [instance[name] for instance in instances] for name in names}
    elif len(names) == 1 and not any(isinstance(instance, dict) for instance in instances):
        columns = {names[0]: instances}
    else:
        raise RequestError(f"each instance must be an object with keys {names}")
    return {name: signature.convert(name, columns[name], limits) for name in names}, True


def work_units(inputs: dict[str, np.ndarray]) -> tuple[int, int]:
    """A request's rows and samples (each 1 where absent): its work is their product."""
    rows = max((array.shape[0] for array in inputs.values() if array.ndim), default=1)
    samples = int(inputs["num_samples"]) if "num_samples" in inputs and inputs["num_samples"].ndim == 0 else 1
    return rows, samples


def calibrate(signatures: dict[str, Signature]) -> Cost:
    """The cost of the `log_likelihood` signature on this machine: a line through two timed calls
    (`CALIBRATION` rows x samples of zeros, valid data for every likelihood), each the median of
    three after a first call that traces it. One call's time over its row-samples (what this
    measured once) counts the call's fixed cost in every row-sample: 3.3x the cost of the largest
    request. Cost(0, 0) for a model without one."""
    signature = signatures.get("log_likelihood")
    if signature is None:
        return Cost(0.0, 0.0)
    units, times = [], []
    for rows, samples in CALIBRATION:
        x = tf.zeros([rows, *_shape(signature.inputs["x"])[1:]], signature.inputs["x"].dtype)
        call = lambda: signature.function(x=x, num_samples=tf.constant(samples), seed=tf.constant(0))  # noqa: E731
        call()
        timed = []
        for _ in range(3):
            start = time.perf_counter()
            call()
            timed.append(time.perf_counter() - start)
        units.append(rows * samples)
        times.append(sorted(timed)[1])
    per_unit = max(times[1] - times[0], 0.0) / (units[1] - units[0]) or times[1] / units[1]
    return Cost(max(times[1] - per_unit * units[1], 0.0), per_unit)


def _check_names(given: dict, names: list[str]) -> None:
    missing, unknown = sorted(set(names) - set(given)), sorted(set(given) - set(names))
    if unknown:
        raise RequestError(f"unknown input names {unknown}; this signature takes {names}")
    if missing:
        raise RequestError(f"missing inputs {missing}; this signature takes {names}")


def format_outputs(outputs: dict[str, np.ndarray], row_format: bool) -> dict:
    """Arrays -> TF Serving's answer: {"predictions": one entry per example} for the row format
    (a value if the signature has one output, else an object), {"outputs": ...} for columnar."""
    lists = {name: np.asarray(value).tolist() for name, value in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}
    if len(lists) == 1:
        return {"predictions": next(iter(lists.values()))}
    n = len(next(iter(lists.values())))
    return {"predictions": [{name: value[i] for name, value in lists.items()} for i in range(n)]}


@dataclass(frozen=True)
class Servable:
    version: int
    signatures: dict[str, Signature]
    saved_model: Any  # the loaded object: it owns the variables the signatures read
    cost: Cost  # of log_likelihood, measured at load (`calibrate`)


class ModelRepository:
    """The numbered version folders under `base_path`; the newest loadable one is served.

    A version that fails to load (a folder still being copied in, say) is remembered with the
    state of its files and tried again once they change; a served version whose folder is
    removed is unloaded, and the newest remaining loadable one served instead."""

    def __init__(self, name: str, base_path: Path):
        self.name, self.base_path = name, Path(base_path)
        self.servable: Optional[Servable] = None
        self.failed: dict[int, tuple[tuple, str]] = {}  # version -> (its files' state, why it failed to load)
        self._lock = threading.Lock()

    def versions_on_disk(self) -> list[int]:
        if not self.base_path.is_dir():
            return []
        return sorted(int(p.name) for p in self.base_path.iterdir()
                      if p.name.isdigit() and (p / "saved_model.pb").exists())

    def _files_state(self, version: int) -> tuple:
        """(path, size, mtime) of every file of a version folder: changes when its files do."""
        folder = self.base_path / str(version)
        try:
            return tuple(sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                                for p in folder.rglob("*") if p.is_file()))
        except OSError:  # removed while we looked
            return ()

    def refresh(self) -> None:
        """Serve the newest version on disk that loads, if it is newer than the one served, or the
        one served is gone from disk; failed versions whose files have not changed are skipped.
        The served version is swapped only once its successor is loaded (blocking)."""
        with self._lock:
            on_disk = self.versions_on_disk()
            current = self.servable if self.servable and self.servable.version in on_disk else None
            self.failed = {v: failure for v, failure in self.failed.items() if v in on_disk}
            chosen = current
            for version in reversed(on_disk):
                if current and version <= current.version:
                    break
                state = self._files_state(version)
                if version in self.failed and self.failed[version][0] == state:
                    continue
                try:
                    loaded = tf.saved_model.load(str(self.base_path / str(version)))
                    signatures = {name: Signature.of(fn) for name, fn in loaded.signatures.items()}
                    cost = calibrate(signatures)
                except Exception as err:  # a broken folder must not take the server down
                    self.failed[version] = (state, f"{type(err).__name__}: {err}".strip())
                    log.error("model %s version %d failed to load: %s", self.name, version, err)
                    continue
                self.failed.pop(version, None)
                chosen = Servable(version, signatures, loaded, cost)
                break
            if chosen is not self.servable:
                if self.servable and self.servable.version not in on_disk:
                    log.warning("model %s version %d was removed from disk", self.name, self.servable.version)
                self.servable = chosen
                log.info("serving model %s version %s", self.name, chosen.version if chosen else "none")

    def get(self, version: Optional[int]) -> Servable:
        servable = self.servable
        if servable is None or (version is not None and version != servable.version):
            which = f"version {version}" if version is not None else "any version"
            raise RequestError(f"Servable not found for request: {which} of model {self.name}", status=404)
        return servable

    def statuses(self, version: Optional[int]) -> list[dict]:
        """TF Serving's model_version_status: the served version AVAILABLE, each version that
        failed to load END with its error (all of them, or only `version`)."""
        servable, failed = self.servable, dict(self.failed)
        entries = {} if servable is None else {servable.version: ("AVAILABLE", "OK", "")}
        entries.update({v: ("END", "UNKNOWN", reason) for v, (_, reason) in failed.items()})
        if version is not None:
            entries = {v: entry for v, entry in entries.items() if v == version}
        if not entries:
            self.get(version)  # the 404 of a version (or model) that is not there
        return [{"version": str(v), "state": state, "status": {"error_code": code, "error_message": message}}
                for v, (state, code, message) in sorted(entries.items(), reverse=True)]


def read_request(data: bytes, charset: Optional[str], servable, limits: Limits):
    """A predict request's body (`data` in `charset`, UTF-8 if none) -> (its signature, its inputs
    as arrays, their row format, the predicted seconds of its work); a `RequestError` (400, or
    413 past `limits.max_seconds`) for anything else."""
    try:
        body = json.loads(data.decode(charset or "utf-8"))
    except (ValueError, LookupError) as err:  # JSONDecodeError, UnicodeDecodeError, an integer over 4300 digits;
        raise RequestError(f"malformed JSON: {err}") from None  # LookupError: an unknown charset
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None
    name = body.get("signature_name", "serving_default") if isinstance(body, dict) else None
    if isinstance(body, dict) and not isinstance(name, str):
        raise RequestError(f"signature_name must be a string, got {_json_kind(name)}")
    if isinstance(body, dict) and name not in servable.signatures:
        raise RequestError(f"unknown signature_name {name!r}; this model has {sorted(servable.signatures)}")
    signature = servable.signatures.get(name)
    inputs, row_format = parse_inputs(body, signature, limits)
    rows, samples = work_units(inputs)
    seconds = servable.cost.seconds(rows * samples)
    if seconds > limits.max_seconds:
        raise RequestError(f"the request asks for {rows} rows x {samples} samples, about {seconds:.3g} s of this "
                           f"model's work ({servable.cost.per_unit * 1e6:.3g} us per row-sample, measured at "
                           f"load), over max_seconds {limits.max_seconds:g}; split it into smaller requests",
                           status=413)
    return signature, inputs, row_format, seconds


def check_finite(outputs: dict[str, np.ndarray], inputs: dict[str, np.ndarray]) -> None:
    """A `RequestError` if a float output is not finite: finite inputs far outside what the model
    was trained on (a decode at z = 3.4e38)."""
    overflowed = sorted(key for key, value in outputs.items() if value.dtype.kind == "f" and not np.isfinite(value).all())
    if overflowed:
        largest = max(float(np.max(np.abs(value))) for value in inputs.values() if value.size)
        raise RequestError(f"outputs {overflowed} are not finite for these inputs (largest magnitude {largest:.3g}); "
                           "the model is defined on inputs of the size it was trained on")


@web.middleware
async def _errors(request, handler):
    """Errors as TF Serving answers them: `{"error": ...}` with the status."""
    try:
        return await handler(request)
    except RequestError as err:
        return web.json_response({"error": str(err)}, status=err.status)
    except web.HTTPException as err:  # aiohttp's own (no such route, wrong method, too large)
        return web.json_response({"error": f"{err.reason}: {request.method} {request.path}"}, status=err.status)
    except RequestPayloadError as err:  # a body aiohttp cannot read (Content-Encoding: gzip on plain bytes)
        return web.json_response({"error": f"unreadable request body: {' '.join(str(err).split())}"}, status=400)
    except tf.errors.InvalidArgumentError as err:  # the model's own checks of its inputs
        return web.json_response({"error": _assertion(err.message)}, status=400)


def make_app(repository: ModelRepository, limits: Limits = Limits(), poll_seconds: float = 1.0) -> web.Application:
    """The aiohttp application; it polls `repository` for new versions while it runs."""
    routes = web.RouteTableDef()
    in_progress = 0  # predictions being parsed, waiting for the model or running
    # the lanes by predicted seconds (see `Limits`), and the threads that parse and write large bodies
    lanes = ((TINY_SECONDS, ThreadPoolExecutor(2)), (SMALL_SECONDS, ThreadPoolExecutor(4)),
             (math.inf, ThreadPoolExecutor(1)))
    bodies = ThreadPoolExecutor(2)

    def model_named(request) -> ModelRepository:
        name = request.match_info["name"]
        if name != repository.name:
            raise RequestError(f"Servable not found for request: model {name!r} (this server has {repository.name!r})",
                               status=404)
        return repository

    def version_of(request) -> Optional[int]:
        text = request.match_info.get("version")
        return int(text) if text is not None else None

    @routes.get("/v1/models/{name}")
    @routes.get(r"/v1/models/{name}/versions/{version:\d+}")
    async def status(request):
        return web.json_response({"model_version_status": model_named(request).statuses(version_of(request))})

    @routes.get("/v1/models/{name}/metadata")
    @routes.get(r"/v1/models/{name}/versions/{version:\d+}/metadata")
    async def metadata(request):
        servable = model_named(request).get(version_of(request))
        return web.json_response({
            "model_spec": {"name": repository.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": {
                name: signature.metadata() for name, signature in servable.signatures.items()}}},
        })

    @routes.post("/v1/models/{name:[^/:]+}:predict")
    @routes.post(r"/v1/models/{name:[^/:]+}/versions/{version:\d+}:predict")
    async def predict(request):
        """At most `max_queue` predictions in progress (parsing, waiting for the model, running
        it); the next ones get 429 at once, with Retry-After."""
        nonlocal in_progress
        if in_progress >= limits.max_queue:
            return web.json_response({"error": f"server overloaded: {in_progress} predictions in progress "
                                               f"(max_queue {limits.max_queue}); retry later"},
                                     status=429, headers={"Retry-After": "1"})
        in_progress += 1
        try:
            return await _predict(request)
        finally:
            in_progress -= 1

    async def off_the_loop(large: bool, pool: ThreadPoolExecutor, work):
        """`work()`, on `pool`'s threads if `large`, else here (a thread's hand-off costs more)."""
        return await asyncio.get_running_loop().run_in_executor(pool, work) if large else work()

    async def _predict(request):
        servable = model_named(request).get(version_of(request))
        data = await request.read()
        signature, inputs, row_format, seconds = await off_the_loop(
            len(data) > INLINE_BODY, bodies, lambda: read_request(data, request.charset, servable, limits))
        lane = next(pool for below, pool in lanes if seconds < below)
        outputs = await asyncio.get_running_loop().run_in_executor(
            lane, lambda: {key: value.numpy() for key, value in signature.function(**inputs).items()})
        check_finite(outputs, inputs)
        text = await off_the_loop(sum(value.size for value in outputs.values()) > INLINE_BODY, bodies,
                                  lambda: _dumps(format_outputs(outputs, row_format)))
        return web.Response(text=text, content_type="application/json")

    async def poll(app):
        async def loop():
            while True:
                await asyncio.get_running_loop().run_in_executor(None, repository.refresh)
                await asyncio.sleep(poll_seconds)

        task = asyncio.create_task(loop())
        yield
        task.cancel()

    app = web.Application(middlewares=[_errors], client_max_size=64 * 2**20)
    app.add_routes(routes)
    app.cleanup_ctx.append(poll)
    return app


def _assertion(message: str) -> str:
    """The text of the failed assertion in a TensorFlow error message (the model's check of its
    inputs, `vae_tf.likelihoods.base.Likelihood.check`), without the graph's node names."""
    found = re.search(r"assertion failed: \[(.*)\]\s*$", message, flags=re.MULTILINE)
    return found.group(1) if found else message.strip().splitlines()[0]


def _dumps(value) -> str:
    """JSON as TF Serving writes it: non-finite floats as NaN / Infinity."""
    return json.dumps(value, allow_nan=True)


def serve(model_name: str, model_base_path: str, host: str, port: int, limits: Limits, poll_seconds: float) -> None:
    from vae_tf.errors import DataError, UserError

    repository = ModelRepository(model_name, Path(model_base_path))
    if not repository.versions_on_disk():
        raise DataError(f"--model-base-path {model_base_path}: no version folder (<n>/saved_model.pb) found; "
                        "export a model first (dvc repro export@<experiment>)")
    repository.refresh()
    if repository.servable is None:
        failures = {version: reason for version, (_, reason) in repository.failed.items()}
        raise DataError(f"--model-base-path {model_base_path}: no version could be loaded: {failures}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        web.run_app(make_app(repository, limits, poll_seconds), host=host, port=port, print=lambda text: log.info(text))
    except OSError as err:  # the listening socket: the port is taken, or the host is not this machine's
        if err.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        raise UserError(f"--host {host} --port {port}: cannot listen there ({err.strerror}); choose another "
                        "port, or stop what uses it") from None
