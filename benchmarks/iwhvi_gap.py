"""Benchmark: how tight IWHVI's bound is on a trained hierarchical posterior, as K_tau grows.

For each K_tau, on the test images of the pipeline's prepared data: the ELBO with IWHVI's
estimate of log q(z|x) (mean over `--draws` draws per image) and the importance-sampling
estimate of log p(x) with that proposal (K = `--num-samples`), each beside the model's AIS
estimate from `metrics/<experiment>.json`: the gap AIS - ELBO shrinks towards KL(q(z|x) ||
p(z|x)) as K_tau grows (the part of it that is log q^ - log q goes). Writes the table to
docs/results/iwhvi_gap.md; asserts nothing.

    dvc repro evaluate@iwhvi && python benchmarks/iwhvi_gap.py --experiment iwhvi
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="iwhvi")
    parser.add_argument("--auxiliary-samples", type=int, nargs="+", default=[1, 2, 8, 32, 128])
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--num-samples", type=int, default=1000)
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    from vae_tf.data import load_prepared
    from vae_tf.evaluation import importance_sampling
    from vae_tf.models import VAE  # noqa: F401  (registers the model class for loading)
    from vae_tf.networks import features
    from vae_tf.posteriors.hierarchical import AuxiliaryProposal
    from vae_tf.provenance import write_result

    model = keras.models.load_model(Path("models") / args.experiment / "model.keras")
    ais = json.loads((Path("metrics") / f"{args.experiment}.json").read_text())["ais"]
    x = tf.constant(load_prepared(Path("data/prepared")).test)
    h, prior = model.likelihood.network_input(x), model.prior_distribution()
    lines = [f"Experiment `{args.experiment}` (trained with K_tau = {model.posterior.auxiliary_samples}), its "
             f"{len(x)} test images; -ELBO over {args.draws} draws an image, NLL by IS with K = {args.num_samples}. "
             f"AIS: NLL {ais['nll']:.2f} ({ais['estimator']}).", "",
             "| K_tau | -ELBO | gap to AIS | NLL, IS | seconds |", "| --- | --- | --- | --- | --- |"]
    for k_tau in args.auxiliary_samples:
        proposal = AuxiliaryProposal(model.posterior, features(model.posterior.trunk, h), k_tau)
        start = time.perf_counter()
        elbo = importance_sampling(x, lambda _: proposal, model.likelihood.distribution, prior, args.draws, 50,
                                   tf.constant([0, k_tau]))["elbo"].numpy().mean()
        nll = -importance_sampling(x, lambda _: proposal, model.likelihood.distribution, prior, args.num_samples,
                                   50, tf.constant([1, k_tau]))["log_likelihood"].numpy().mean()
        lines.append(f"| {k_tau} | {-elbo:.2f} | {-elbo - ais['nll']:.2f} | {nll:.2f} | {time.perf_counter() - start:.1f} |")
        print(lines[-1], flush=True)
    write_result("iwhvi_gap", " ".join(["python", "benchmarks/iwhvi_gap.py", *sys.argv[1:]]), "\n".join(lines))


if __name__ == "__main__":
    main()
