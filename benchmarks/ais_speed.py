"""Benchmark: seconds per AIS step at the evaluate stage's settings (params.yaml: 8 chains x 500
HMC steps, one leapfrog step) on a batch of 64 test images, for the `vae` experiment (untrained: the cost
does not depend on the weights). Prints the median of 5 timed runs after one compiling run, and
the estimate, so that two versions of `vae_tf/ais.py` can be compared on one machine. Asserts
nothing.

    python benchmarks/ais_speed.py
"""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vae_tf.ais import ais_log_likelihood  # noqa: E402
from vae_tf.config import load_params  # noqa: E402
from vae_tf.data import prepare  # noqa: E402
from vae_tf.models import build_model  # noqa: E402


def main() -> None:
    params = load_params("params.yaml").experiment("vae")
    ais = params.evaluation.ais
    data = prepare(params.data, 0)
    keras.utils.set_random_seed(0)
    model = build_model(params, data.meta)
    x = tf.constant(data.test[:64])
    run = tf.function(lambda x, seed: ais_log_likelihood(x, model.likelihood.distribution, model.prior_distribution(),
                                                         ais.num_chains, ais.num_steps, ais.leapfrog_steps,
                                                         ais.step_size, seed), jit_compile=True)
    run(x, tf.constant([0, 0]))  # compile
    times = []
    for i in range(5):
        start = time.perf_counter()
        out = run(x, tf.constant([0, i]))
        out["log_likelihood"].numpy()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"AIS, 64 images x {ais.num_chains} chains x {ais.num_steps} steps: {median:.3f} s, "
          f"{median / ais.num_steps * 1e3:.2f} ms per step; mean log p(x) {out['log_likelihood'].numpy().mean():.3f}, "
          f"acceptance {out['acceptance'].numpy().mean():.3f}")


if __name__ == "__main__":
    main()
