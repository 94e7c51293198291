"""Running a stage from the command line: user errors become one message and exit code 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of stage logs


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
        sys.exit(2)


def run_experiment_stage(stage_name: str) -> None:
    """Entry point of `pipeline/<stage>.py <experiment>`."""
    from vae_tf import stages

    if len(sys.argv) != 2:
        print(f"usage: python pipeline/{stage_name}.py <experiment>", file=sys.stderr)
        sys.exit(2)
    run(getattr(stages, stage_name), sys.argv[1])


def main(argv: list[str] | None = None) -> None:
    """`vae-tf serve ...`: the command-line entry point (see `vae-tf --help`)."""
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
    serve.add_argument("--max-work", type=int, default=1_000_000,
                       help="largest rows x num_samples of one request (413 beyond)")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests in progress at once; more are answered 429 with Retry-After")
    serve.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for a new version")
    args = parser.parse_args(argv)
    for flag in ("max_batch_size", "max_num_samples", "max_work", "max_queue", "poll_seconds"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')} must be positive")
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be in 1-65535, got {args.port}")

    from vae_tf.serving import Limits, serve as run_server

    run(run_server, args.model_name, args.model_base_path, args.host, args.port,
        Limits(args.max_batch_size, args.max_num_samples, args.max_work, args.max_queue), args.poll_seconds)
