"""Benchmark: the default VAE on digits against the reference PyTorch figures (issue #2).

Trains the `vae` experiment of params.yaml for each seed, then estimates the test NLL by
importance sampling with K = evaluation.num_samples. Writes the figures to
docs/results/vae_digits.md; asserts nothing.

    python benchmarks/vae_digits.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from vae_tf.config import load_params  # noqa: E402
from vae_tf.data import prepare  # noqa: E402
from vae_tf.evaluation import evaluate_model  # noqa: E402
from vae_tf.provenance import write_result  # noqa: E402
from vae_tf.training import train  # noqa: E402

REFERENCE = {"nll": 93.71, "nll_spread": 0.61, "seconds_per_epoch": 0.066, "eval_seconds": 21.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    base = load_params(args.params).experiment("vae")
    rows = []
    for seed in args.seeds:
        params = base.model_copy(update={"seed": seed})
        data = prepare(params.data, seed)
        with tempfile.TemporaryDirectory() as folder:
            os.chdir(folder)
            start = time.perf_counter()
            history = train(params, data, Path(folder) / "model.keras", Path(folder) / "live", Path(folder) / "backup")
            fit_seconds = time.perf_counter() - start
            import keras

            model = keras.models.load_model(Path(folder) / "model.keras")
        e = params.evaluation
        start = time.perf_counter()
        result = evaluate_model(model, data.test, e.model_copy(update={"ais": None}), seed)
        eval_seconds = time.perf_counter() - start
        epochs = len(history.epoch)
        rows.append({
            "seed": seed, "epochs": epochs, "nll": result["metrics"]["nll"],
            "epoch_mean": float(np.mean(history.history["epoch_seconds"][1:])),
            "epoch_median": float(np.median(history.history["epoch_seconds"][1:])),
            "first_epoch_incl_compile": float(history.history["epoch_seconds"][0]),
            "fit_seconds": fit_seconds, "eval_seconds": eval_seconds,
            "active_units": result["metrics"]["active_units"],
        })
        print(rows[-1], flush=True)

    nll = np.array([row["nll"] for row in rows])
    epoch = np.mean([row["epoch_mean"] for row in rows])
    evaluation = np.mean([row["eval_seconds"] for row in rows])
    k, spread = base.evaluation.num_samples, nll.std(ddof=1) if len(nll) > 1 else 0.0
    lines = [f"The `vae` experiment of params.yaml, seeds {args.seeds}, against the reference PyTorch figures.", "",
             "| figure | vae-tf | reference | ratio |", "| --- | --- | --- | --- |",
             f"| test NLL (IS, K = {k}), mean +- sd over seeds | {nll.mean():.2f} +- {spread:.2f} | "
             f"{REFERENCE['nll']} +- {REFERENCE['nll_spread']} | |",
             f"| seconds per epoch (mean after the first, compiling, epoch; validation and callbacks included) | "
             f"{epoch:.4f} | {REFERENCE['seconds_per_epoch']} | {epoch / REFERENCE['seconds_per_epoch']:.2f} |",
             f"| evaluation, K = {k} on {len(data.test)} test images, seconds (compile included) | {evaluation:.1f} | "
             f"{REFERENCE['eval_seconds']} | {evaluation / REFERENCE['eval_seconds']:.2f} |"]
    print("\n".join(lines))
    write_result("vae_digits", " ".join(["python", "benchmarks/vae_digits.py", *sys.argv[1:]]), "\n".join(lines))


if __name__ == "__main__":
    main()
