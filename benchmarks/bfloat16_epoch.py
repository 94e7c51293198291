"""Benchmark: a training epoch of the study's protocol VAE in float32 and under Keras'
`mixed_bfloat16` policy (bfloat16 products, float32 variables and densities), with and without
XLA, interleaved so that a change in the machine's load falls on every setting alike.

Each setting's model is built once, trains one epoch to compile, then `--rounds` rounds each time
one epoch per setting in turn; the median seconds per epoch and its ratio to float32 with XLA are
printed and written to docs/results/bfloat16_epoch.md, with the validation bound after the last
round (whether bfloat16 learns as well is the NLL's question, for a full run). Asserts nothing.

    cd studies/fashion_mnist && dvc repro prepare resolve && cd ../.. && python benchmarks/bfloat16_epoch.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "fashion_mnist")
    parser.add_argument("--setting", default="cv_vae")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import keras
    import numpy as np

    from vae_tf.config import load_params
    from vae_tf.data import load_prepared
    from vae_tf.models import build_model
    from vae_tf.provenance import write_result
    from vae_tf.training import minibatches

    base = load_params(args.study / "params.yaml").experiment(args.setting)
    data = load_prepared(args.study / "data" / "prepared")
    t = base.training
    settings = {(policy, xla): None for policy in ("float32", "mixed_bfloat16") for xla in (True, False)}
    fits = {}
    for policy, xla in settings:
        keras.config.set_dtype_policy(policy)
        params = base.model_copy(update={"training": t.model_copy(update={"jit_compile": xla})})
        model = build_model(params, data.meta)  # the policy is read as the layers are made
        model.adapt(data.train)
        batches, steps = minibatches(data.train, t.batch_size, t.steps_per_execution, seed=base.seed)
        val, _ = minibatches(data.val, 1000, t.steps_per_execution, seed=None)

        def epoch(model=model, batches=batches, steps=steps, val=val):
            start = time.perf_counter()
            model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)
            seconds = time.perf_counter() - start
            return seconds, model.evaluate(val, verbose=0, return_dict=True)["bound"]

        epoch()  # compiles
        fits[(policy, xla)] = epoch
    keras.config.set_dtype_policy("float32")
    times = {setting: [] for setting in fits}
    bounds = {}
    for _ in range(args.rounds):
        for setting, epoch in fits.items():
            seconds, bounds[setting] = epoch()
            times[setting].append(seconds)
            print(setting, f"{seconds:.2f} s", flush=True)
    reference = np.median(times[("float32", True)])
    rows = [f"| {policy} | {'XLA' if xla else 'no XLA'} | {np.median(s):.2f} | "
            f"{reference / np.median(s):.2f}x | {bounds[(policy, xla)]:.2f} |" for (policy, xla), s in times.items()]
    text = "\n".join([
        f"One epoch of `{args.setting}` ({len(data.train)} images, batch {t.batch_size}) per setting, {args.rounds} "
        f"interleaved rounds after a compiling epoch; median seconds, and the speed-up over float32 with XLA "
        f"(> 1: faster). Validation bound after {args.rounds + 1} epochs.", "",
        "| policy | compiled | s / epoch | speed-up | validation bound |", "| --- | --- | --- | --- | --- |", *rows])
    print(text)
    write_result("bfloat16_epoch", " ".join(["python", *sys.argv]), text)


if __name__ == "__main__":
    main()
