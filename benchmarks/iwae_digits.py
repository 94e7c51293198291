"""Benchmark: the IWAE on digits against the reference PyTorch figures (issue #3).

For each K and seed, trains the `iwae` experiment of params.yaml with objective.num_samples = K
for a fixed 50 epochs (no early stopping, as the reference), in a fresh process (so that its
peak memory is its own), and estimates the test NLL by importance sampling with
K = evaluation.num_samples. Writes the table to docs/results/iwae_digits.md; asserts nothing.

    python benchmarks/iwae_digits.py --ks 1 5 50 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from vae_tf.provenance import write_result  # noqa: E402

REFERENCE = {"nll": {1: 96.46, 5: 95.12, 50: 94.19}, "seconds_per_epoch_k50": 1.18, "k50_over_k1": (15, 17)}
# The reference's count for one K = 50 epoch, and the time this machine's matrix units need for it.
K50_EPOCH_GFLOP, K50_EPOCH_LIMIT_SECONDS = 105.0, 0.45


def decoder_flop_per_epoch(params, meta, n_train: int, k: int) -> float:
    """Multiply-adds x 2 of the decoder MLP, forward and backward (x 3), for K draws of every
    training image: the part of the epoch that grows with K."""
    sizes = [params.model.latent_dim, *params.model.hidden_units, meta.dimension * (meta.n_levels or 2)]
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2 * 3 * macs * n_train * k


def one_run(k: int, seed: int, epochs: int, params_path: str) -> dict:
    """Train and evaluate one (K, seed) in this process; return its figures."""
    import keras

    from vae_tf.config import load_params
    from vae_tf.data import prepare
    from vae_tf.evaluation import evaluate_model
    from vae_tf.training import peak_memory_mb, train

    base = load_params(params_path).run("iwae")
    params = base.model_copy(update={
        "seed": seed,
        "objective": base.objective.model_copy(update={"num_samples": k}),
        "training": base.training.model_copy(update={"epochs": epochs, "early_stopping_patience": epochs}),
    })
    data = prepare(params.data, seed)
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        history = train(params, data, Path(folder) / "model.keras", Path(folder) / "live", Path(folder) / "backup")
        model = keras.models.load_model(Path(folder) / "model.keras")
    e = params.evaluation
    start = time.perf_counter()
    result = evaluate_model(model, data.test, e.model_copy(update={"ais": None}), seed)
    seconds = history.history["epoch_seconds"][1:]  # the first epoch includes XLA compilation
    batch = params.training.batch_size
    return {
        "k": k, "seed": seed, "epochs": len(history.epoch), "nll": result["metrics"]["nll"],
        "active_units": result["metrics"]["active_units"], "test_iwae_bound": result["metrics"]["iwae_bound"],
        "epoch_mean": float(np.mean(seconds)), "epoch_median": float(np.median(seconds)),
        "eval_seconds": time.perf_counter() - start, "peak_memory_mb": peak_memory_mb(),
        # decoder output of one training step: [K * batch, D * levels] float32 logits
        "decoder_logits_mb": k * batch * data.meta.dimension * (data.meta.n_levels or 1) * 4 / 2**20,
        "decoder_gflop_per_epoch": decoder_flop_per_epoch(params, data.meta, len(data.train), k) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--params", default=str(Path("params.yaml").resolve()))
    parser.add_argument("--one", nargs=2, type=int, metavar=("K", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(*args.one, args.epochs, args.params)))
        return

    rows = []
    for k in args.ks:
        for seed in args.seeds:
            out = subprocess.run([sys.executable, __file__, "--one", str(k), str(seed), "--epochs", str(args.epochs),
                                  "--params", args.params], capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)

    def mean(k, key):
        return float(np.mean([row[key] for row in rows if row["k"] == k]))

    lines = [f"{args.epochs} epochs, seeds {args.seeds}; test NLL by IS (mean +- sd over seeds) beside the reference.", "",
             "| K | test NLL (IS) | reference | s / epoch | x K = 1 | active units | peak MiB | logits MiB / step |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in args.ks:
        nll = [row["nll"] for row in rows if row["k"] == k]
        ratio = mean(k, "epoch_mean") / mean(args.ks[0], "epoch_mean")
        lines.append(f"| {k} | {np.mean(nll):.2f} +- {np.std(nll, ddof=1) if len(nll) > 1 else 0:.2f} | "
                     f"{REFERENCE['nll'].get(k, '-')} | {mean(k, 'epoch_mean'):.3f} | {ratio:.1f} | "
                     f"{mean(k, 'active_units'):.1f} | {mean(k, 'peak_memory_mb'):.0f} | {mean(k, 'decoder_logits_mb'):.1f} |")
    if 50 in args.ks:
        epoch = mean(50, "epoch_mean")
        lines += ["", f"K = 50 epoch: {epoch:.3f} s = {epoch / REFERENCE['seconds_per_epoch_k50']:.2f} x reference "
                  f"{REFERENCE['seconds_per_epoch_k50']} s; the {K50_EPOCH_GFLOP:.0f} GFLOP limit of "
                  f"{K50_EPOCH_LIMIT_SECONDS} s is {K50_EPOCH_LIMIT_SECONDS / epoch:.0%} of it (decoder alone: "
                  f"{mean(50, 'decoder_gflop_per_epoch'):.0f} GFLOP, "
                  f"{mean(50, 'decoder_gflop_per_epoch') / epoch:.0f} GFLOP/s achieved)."]
    print("\n".join(lines))
    write_result("iwae_digits", " ".join(["python", "benchmarks/iwae_digits.py", *sys.argv[1:]]), "\n".join(lines))

if __name__ == "__main__":
    main()
