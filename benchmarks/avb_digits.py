"""Benchmark: AVB variants on digits, at the default budget (early stopping), against the VAE.

Each variant is a JSON object of overrides of the `avb` experiment's objective (`{}` is the
experiment as in params.yaml; `vae` runs the `vae` experiment instead). Each run trains in its
own process, then estimates the test NLL by importance sampling (the model's proposal) and by
AIS, as the evaluate stage does. Prints figures, among them the discriminator's validation
accuracy over the epochs (min, max, last): near 0 or 1 means one player is winning outright.
Asserts nothing.

    python benchmarks/avb_digits.py vae '{}' '{"adaptive_contrast": false}' '{"discriminator_steps": 2}'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_run(variant: str, seed: int, params_path: str) -> dict:
    """Train and evaluate one variant in this process; return its figures."""
    import keras
    import numpy as np

    from vae_tf.config import load_params
    from vae_tf.data import prepare
    from vae_tf.evaluation import evaluate_model
    from vae_tf.training import train

    params = load_params(params_path)
    if variant == "vae":
        run = params.experiment("vae")
    else:
        run = params.experiment("avb")
        run = run.model_copy(update={"objective": run.objective.model_copy(update=json.loads(variant))})
    run = run.model_copy(update={"seed": seed})
    data = prepare(run.data, seed)
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        history = train(run, data, Path(folder) / "model.keras", Path(folder) / "live", Path(folder) / "backup").history
        model = keras.models.load_model(Path(folder) / "model.keras")
    metrics = evaluate_model(model, data.test, run.evaluation, seed)["metrics"]
    accuracy = history.get("val_discriminator_accuracy")  # None for the VAE: no discriminator
    return {
        "variant": variant, "seed": seed, "epochs": len(history["loss"]),
        "nll_is": metrics["nll"], "nll_ais": metrics["ais"]["nll"], "ais_stderr": metrics["ais"]["nll_stderr"],
        "seconds_per_epoch": float(np.median(history["epoch_seconds"][1:])),  # the first includes XLA compilation
        "accuracy": [min(accuracy), max(accuracy), accuracy[-1]] if accuracy else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["vae", "{}", '{"adaptive_contrast": false}'])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--params", default=str(Path("params.yaml").resolve()))
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]), args.params)))
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; seeds {args.seeds}")
    print(f"{'variant':<40} {'seed':>4} {'NLL IS':>7} {'NLL AIS':>12} {'epochs':>6} {'s/epoch':>8} "
          f"{'val. accuracy min-max (last)':>28}")
    for variant in args.variants:
        for seed in args.seeds:
            out = subprocess.run([sys.executable, __file__, "--one", variant, str(seed), "--params", args.params],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            accuracy = "{:.2f}-{:.2f} ({:.2f})".format(*r["accuracy"]) if r["accuracy"] else "-"
            print(f"{variant:<40} {seed:>4} {r['nll_is']:7.2f} {r['nll_ais']:7.2f} ± {r['ais_stderr']:.2f} "
                  f"{r['epochs']:>6} {r['seconds_per_epoch']:8.3f} {accuracy:>28}", flush=True)


if __name__ == "__main__":
    main()
