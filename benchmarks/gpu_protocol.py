"""Benchmark: the study's protocol rows on one GPU, at the papers' budget, with their figures.

Trains each run of `studies/fashion_mnist/params.yaml` named (by default cv_vae and cv_vamp: the
gated 300-300 VAE and VampPrior, KL warm-up over 100 epochs, early stopping with patience 50, up
to 2000 epochs) until early stopping, evaluates it as the study does (IS with K = 5000 on all
10,000 test images, AIS from q(z|x)), and prints and writes a row per run marked with the device
it ran on (`--out`: <run>.json, the dvclive curves and the model). Meant for one H100 in under ten
minutes for both rows; on a CPU it runs too, for hours. The data are Fashion-MNIST's IDX files
(`--idx`: Debian's dataset-fashion-mnist folder, or a copy of its four .gz files).

    python benchmarks/gpu_protocol.py --idx /usr/share/datasets/fashion-mnist --out /tmp/gpu_rows
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STUDY = Path(__file__).resolve().parents[1] / "studies" / "fashion_mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["cv_vae", "cv_vamp"])
    parser.add_argument("--idx", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST's IDX folder")
    parser.add_argument("--out", required=True, help="a folder for each run's row, curves and model")
    parser.add_argument("--epochs", type=int, default=None, help="a cap below the protocol's, to try the script")
    parser.add_argument("--test-images", type=int, default=None, help="the first N test images (all: the study's)")
    args = parser.parse_args()
    import tensorflow as tf

    from vae_tf.config import load_params
    from vae_tf.data import prepare
    from vae_tf.evaluation import evaluate_model
    from vae_tf.models import uses_xla
    from vae_tf.training import train

    gpus = tf.config.list_physical_devices("GPU")
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    study = load_params(STUDY / "params.yaml")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_params = study.data.model_copy(update={"path": args.idx})
    begin = time.perf_counter()
    data = prepare(data_params, study.seed)
    print(f"{device}: prepared {len(data.train)} training images in {time.perf_counter() - begin:.0f} s", flush=True)
    for name in args.runs:
        params = study.run(name)
        if args.epochs:
            params = params.model_copy(update={"training": params.training.model_copy(update={"epochs": args.epochs})})
        start = time.perf_counter()
        history = train(params, data, out / name / "model.keras", out / name / "live", out / name / "backup")
        trained_in = time.perf_counter() - start
        result = evaluate_model(history.model, data.test[:args.test_images], params.evaluation, params.seed,
                                jit_compile=uses_xla(params))
        summary = json.loads((out / name / "live" / "metrics.json").read_text())
        m = result["metrics"]
        row = {"run": name, "device": device, "nll": m["nll"], "nll_stderr": m["nll_stderr"], "elbo": m["elbo"],
               "ais_nll": (m.get("ais") or {}).get("nll"), "active_units": m["active_units"],
               **{key: summary[key] for key in ("epochs_run", "best_epoch", "stopped_by", "posterior_collapse")},
               "seconds_training": trained_in, "seconds_evaluation": time.perf_counter() - start - trained_in,
               "estimators": {"is": m["estimator"], "ais": (m.get("ais") or {}).get("estimator")}}
        (out / f"{name}.json").write_text(json.dumps(row, indent=2))
        print(json.dumps(row), flush=True)
    print(f"{device}: {len(args.runs)} rows in {time.perf_counter() - begin:.0f} s", flush=True)


if __name__ == "__main__":
    main()
