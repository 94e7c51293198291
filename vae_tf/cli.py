"""Running a stage from the command line: user errors become one message and exit code 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of stage logs


def run(stage: Callable[..., None], *args: str) -> None:
    from vae_tf.errors import UserError

    try:
        stage(*args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run_experiment_stage(stage_name: str) -> None:
    """Entry point of `pipeline/<stage>.py <experiment>`."""
    from vae_tf import stages

    if len(sys.argv) != 2:
        print(f"usage: python pipeline/{stage_name}.py <experiment>", file=sys.stderr)
        sys.exit(2)
    run(getattr(stages, stage_name), sys.argv[1])
