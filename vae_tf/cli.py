"""Running a stage from the command line: user errors become one message and exit code 2."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO and WARNING lines once absl logging is up

# TensorFlow's notices while it loads and finds its devices: (file, start of message) of an absl line
# "I0000 00:00:1795400131.234888   32613 port.cc:153] oneDNN custom operations are on. ..."
NO_DRIVER = ("cudart_stub", "Could not find cuda drivers on your machine")
STARTUP_NOTICES = {NO_DRIVER, ("port", "oneDNN custom operations are on"),
                   ("cpu_feature_guard", "This TensorFlow binary is optimized")}
ABSL_LINE = re.compile(r"[IWEF]\d{4} \S+\s+\d+ (\w+)\.cc:\d+\] (.*)")
BEFORE_ABSL_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
CPU_FEATURES_HINT = "To enable the following instructions:"  # the second line of cpu_feature_guard's notice
TENSORFLOW_STAGES = ("train", "evaluate", "export")  # resolve loads it once params are read; the others never


def without_startup_notices(text: str) -> str:
    """`text` (what TensorFlow wrote to stderr while loading) less its start-up notices, and less
    the failed cuInit that follows "Could not find cuda drivers" (no driver: the CPU is used, as
    expected). Every other line is kept: on a machine with a driver, a failing cuInit stays."""
    lines = text.splitlines(keepends=True)
    parsed = [ABSL_LINE.match(line) for line in lines]
    no_driver = any(m is not None and m.group(1) == NO_DRIVER[0] and m.group(2).startswith(NO_DRIVER[1])
                    for m in parsed)

    def notice(line: str, m) -> bool:
        if line.rstrip("\n") == BEFORE_ABSL_INIT or line.startswith(CPU_FEATURES_HINT):
            return True
        if m is None:
            return False
        source, message = m.groups()
        if no_driver and source == "cuda_platform" and message.startswith("failed call to cuInit"):
            return True
        return any(source == s and message.startswith(start) for s, start in STARTUP_NOTICES)

    return "".join(line for line, m in zip(lines, parsed) if not notice(line, m))


@contextlib.contextmanager
def _stderr_filtered(keep: Callable[[str], str]):
    """File descriptor 2 (C++ code writes there, not to sys.stderr) into a temporary file for
    the block; then `keep(what was written)` goes to the real stderr, also if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            sys.stderr.write(keep(captured.read().decode(errors="replace")))
            sys.stderr.flush()


def import_tensorflow() -> None:
    """Load TensorFlow and list its devices without its start-up notices in the stage's log.
    TF 2.21 prints them before absl logging is initialised, where TF_CPP_MIN_LOG_LEVEL does not
    reach (tensorflow PR #102212 initialises it). Listing physical devices starts no runtime, so
    a strategy or device setting made later still applies."""
    with _stderr_filtered(without_startup_notices):
        import tensorflow as tf

        tf.config.list_physical_devices()


def run(stage: Callable[..., None], *args: str) -> None:
    """`stage(*args)`; a user error, or memory running out (settings too large for this
    machine), is one line on stderr and exit code 2."""
    from vae_tf.errors import UserError

    try:
        stage(*args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        tf = sys.modules.get("tensorflow")
        out_of_memory = (MemoryError, *((tf.errors.ResourceExhaustedError,) if tf is not None else ()))
        if not isinstance(err, out_of_memory):
            raise
        detail = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        print(f"error: out of memory ({detail}); the settings ask for more than this machine has: reduce "
              "model.hidden_units, model.latent_dim, training.batch_size, evaluation.batch_size or "
              "evaluation.chunk_size", file=sys.stderr)
        # Not sys.exit: once an allocation has failed, the interpreter's teardown (TensorFlow's
        # destructors) aborted four such runs with "double free" (exit -6, a signal DVC reports as a
        # crash); the process ends here with its own code instead, its output flushed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)


def run_stage(stage_name: str) -> None:
    """Entry point of `pipeline/<stage>.py`: the arguments of `vae_tf.stages.<stage>` without a
    default, in order, from the command line (the paths dvc.yaml declares, as its `cmd`)."""
    import inspect

    from vae_tf import stages

    stage = getattr(stages, stage_name)
    names = [name for name, p in inspect.signature(stage).parameters.items() if p.default is inspect.Parameter.empty]
    if len(sys.argv) != len(names) + 1:
        print(f"usage: python pipeline/{stage_name}.py {' '.join(f'<{name}>' for name in names)}", file=sys.stderr)
        sys.exit(2)
    if stage_name in TENSORFLOW_STAGES:
        import_tensorflow()
    run(stage, *sys.argv[1:])


def main(argv: list[str] | None = None) -> None:
    """`vae-tf serve ...`, `vae-tf offline-plots`: the command-line entry point (see `vae-tf --help`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="vae-tf", description="vae-tf commands (the pipeline itself runs with `dvc repro`)")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve an exported model over TF Serving's REST API")
    serve.add_argument("--model-name", required=True, help="the <name> in /v1/models/<name>")
    serve.add_argument("--model-base-path", required=True, help="folder of numbered versions, e.g. export/vae")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501, help="TF Serving's REST port by default (1-65535)")
    serve.add_argument("--max-batch-size", type=int, default=1024, help="most rows in one request")
    serve.add_argument("--max-num-samples", type=int, default=10000, help="largest scalar num_samples input")
    serve.add_argument("--max-seconds", type=float, default=10.0,
                       help="largest predicted time of one request: rows x num_samples x the model's seconds per "
                            "row-sample, measured at load (413 beyond)")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests in progress at once; more are answered 429 with Retry-After")
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for a new version")
    offline = commands.add_parser("offline-plots", help="make dvc plots show / diff pages work without network "
                                                        "(Vega's scripts inline; vae_tf.offline_plots)")
    offline.add_argument("--from", dest="tarballs", type=Path,
                         help="a folder of the npm tarballs (else fetched with npm pack)")
    args = parser.parse_args(argv)
    if args.command == "offline-plots":
        from vae_tf.offline_plots import build

        return run(lambda: print(f"wrote {build(Path('.'), args.tarballs)}; set as plots.html_template "
                                 "in .dvc/config.local"))
    for flag in ("max_batch_size", "max_num_samples", "max_seconds", "max_queue", "poll_seconds"):
        if not getattr(args, flag) > 0:  # NaN too
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1-65535, got {args.port}")
    try:
        socket.getaddrinfo(args.host, args.port)
    except socket.gaierror as err:  # aiohttp's answer, after the model loaded: a 39-line traceback
        parser.error(f"--host {args.host}: not a host name or address ({err.strerror})")

    import_tensorflow()
    from vae_tf.serving import Limits, serve as run_server

    run(run_server, args.model_name, args.model_base_path, args.host, args.port,
        Limits(args.max_batch_size, args.max_num_samples, args.max_seconds, args.max_queue), args.poll_seconds)
