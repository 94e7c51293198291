"""Benchmark: named variants of the pipeline's runs on digits, trained and evaluated as the
train and evaluate stages do (default budget, early stopping; IS K = evaluation.num_samples and
AIS), for several seeds. Prints one row per run, then per variant the mean and spread over seeds
of: test NLL by IS and by AIS, -ELBO (of the evaluation's proposal, the posterior itself but for
an implicit one; a hierarchical posterior's with IWHVI's log q) and the gap log p(x) - ELBO =
-ELBO - NLL (IS), the ELBO's KL term split into I(x; z) and KL(q(z) || p(z)) (the
ELBO surgery), active units, seconds per epoch, and, where there is a discriminator, its
validation accuracy. Writes the summary and every run to docs/results/<--name>.md; asserts nothing.

A variant is NAME=JSON: overrides deep-merged onto params.yaml's base, as an experiment's are;
the key "experiment" starts from that experiment instead. Each run is its own process.
`--seeds` takes every number after it: give it after the variants (or end it with another option).

    python benchmarks/compare_digits.py standard='{}' \\
        mixture='{"model": {"prior": "mixture"}}' vamp='{"model": {"prior": "vamp"}}' \\
        flow='{"model": {"prior": "flow"}}' --seeds 0 1 2
    python benchmarks/compare_digits.py avb='{"experiment": "avb"}' \\
        avb_plain='{"experiment": "avb", "objective": {"adaptive_contrast": false}}'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_run(name: str, overrides: dict, seed: int, params_path: str) -> dict:
    """Train and evaluate one variant in this process; return its figures."""
    import keras
    import numpy as np

    from vae_tf.config import load_params
    from vae_tf.config.schema import deep_merge
    from vae_tf.data import prepare
    from vae_tf.evaluation import evaluate_model
    from vae_tf.training import train

    params = load_params(params_path)
    start = overrides.pop("experiment", None)
    if start:  # the variant's overrides on top of the experiment's
        overrides = deep_merge(params.experiments[start] or {}, overrides)
    run = params.model_copy(update={"experiments": {name: overrides}}).experiment(name)
    run = run.model_copy(update={"seed": seed})
    data = prepare(run.data, seed)
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        history = train(run, data, Path(folder) / "model.keras", Path(folder) / "live", Path(folder) / "backup").history
        model = keras.models.load_model(Path(folder) / "model.keras")
    metrics = evaluate_model(model, data.test, run.evaluation, seed)["metrics"]
    accuracy = history.get("val_discriminator_accuracy")
    surgery = metrics["elbo_surgery"]
    return {
        "variant": name, "seed": seed, "epochs": len(history["loss"]), "nll_is": metrics["nll"],
        "nll_ais": metrics["ais"]["nll"] if "ais" in metrics else float("nan"), "neg_elbo": -metrics["elbo"],
        "gap": -metrics["elbo"] - metrics["nll"], "kl_term": surgery["kl_term"],
        "mutual_information": surgery["mutual_information"], "hole": surgery["kl_aggregate_posterior_prior"],
        "active_units": metrics["active_units"],
        "seconds_per_epoch": float(np.median(history["epoch_seconds"][1:])),  # the first includes XLA compilation
        "accuracy": [min(accuracy), max(accuracy), accuracy[-1]] if accuracy else None,
    }


COLUMNS = [("nll_is", "NLL IS", 7), ("nll_ais", "NLL AIS", 7), ("neg_elbo", "-ELBO", 7), ("gap", "gap", 5),
           ("kl_term", "KL term", 7),
           ("mutual_information", "I(x;z)", 6), ("hole", "KL(q(z)||p)", 11), ("active_units", "AU", 4),
           ("epochs", "epochs", 6), ("seconds_per_epoch", "s/epoch", 7)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", metavar="NAME=JSON")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--params", default=str(Path("params.yaml").resolve()))
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument("--name", default="compare_digits", help="the table's file: docs/results/<name>.md")
    parser.add_argument("--one", nargs=3, metavar=("NAME", "JSON", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], json.loads(args.one[1]), int(args.one[2]), args.params)))
        return
    import numpy as np

    from vae_tf.provenance import write_result

    if not args.variants:
        parser.error("name at least one variant NAME=JSON")
    variants = [variant.partition("=")[::2] for variant in args.variants]
    header = f"{'variant':<14} {'seed':>4} " + " ".join(f"{title:>{width}}" for _, title, width in COLUMNS)
    print(header + "  val. accuracy min-max (last)")
    rows = []
    for name, overrides in variants:
        for seed in args.seeds:
            out = subprocess.run([sys.executable, __file__, "--one", name, overrides or "{}", str(seed),
                                  "--params", args.params], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{name} seed {seed} failed:\n{out.stderr[-3000:]}")
            rows.append(r := json.loads(out.stdout.strip().splitlines()[-1]))
            accuracy = "  {:.2f}-{:.2f} ({:.2f})".format(*r["accuracy"]) if r["accuracy"] else ""
            print(f"{name:<14} {seed:>4} " + " ".join(f"{r[key]:{width}.2f}" if isinstance(r[key], float)
                                                     else f"{r[key]:>{width}}" for key, _, width in COLUMNS)
                  + accuracy, flush=True)
    titles = " | ".join(title.replace("|", "\\|") for _, title, _ in COLUMNS)  # a pipe would end a cell
    lines = [f"Mean +- sd over seeds {args.seeds}; variants: " + "; ".join(f"{n} `{o or '{}'}`" for n, o in variants),
             "", f"| variant | {titles} |", "| --- |" + " --- |" * len(COLUMNS)]
    for name, _ in variants:
        mine = [r for r in rows if r["variant"] == name]
        cells = []
        for key, _, _ in COLUMNS:
            values = np.array([r[key] for r in mine], float)
            cells.append(f"{values.mean():.2f} +- {values.std(ddof=1) if len(values) > 1 else 0:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Every run (the discriminator's validation accuracy: min-max, last epoch):", "",
              f"| variant | seed | {titles} | accuracy |", "| --- | --- |" + " --- |" * (len(COLUMNS) + 1)]
    for r in rows:
        cells = [f"{r[key]:.2f}" if isinstance(r[key], float) else str(r[key]) for key, _, _ in COLUMNS]
        accuracy = "{:.2f}-{:.2f} ({:.2f})".format(*r["accuracy"]) if r["accuracy"] else ""
        lines.append(f"| {r['variant']} | {r['seed']} | " + " | ".join(cells) + f" | {accuracy} |")
    print("\n".join(lines))
    write_result(args.name, " ".join(["python", "benchmarks/compare_digits.py", *sys.argv[1:]]), "\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
