"""Benchmark: does AIS converge on a trained model? Its estimate at C chains x T steps against
2C x T and C x 2T, from the prior and from q(z|x), beside importance sampling, on the same images;
and its error bounded on data simulated from the model (BDMC).

AIS's log p(x) is a stochastic lower bound whose gap shrinks with the steps (and its variance with
the chains): a setting has converged when doubling either moves the mean estimate by less than
the tolerance (0.5 nat here). IS with K draws of q(z|x) is a lower bound too, so an AIS figure
well above it (as an NLL) is an AIS that did not converge. Per image, averaged, ± one standard
error of the paired difference.

BDMC (Grosse et al. 2015): on as many images simulated from the model (z ~ p(z), x ~ p(x|z)), AIS
at C x T forward (a stochastic lower bound on log p(x)) and in reverse from the z that made each x
(an upper bound): their gap bounds the error of either on such data. Writes
docs/results/ais_convergence_<run>.md; asserts nothing.

    cd studies/fashion_mnist && dvc repro evaluate@cv_vae && cd ../.. && \\
        python benchmarks/ais_convergence.py --study studies/fashion_mnist --run cv_vae
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TOLERANCE = 0.5  # nats: doubling chains or steps moves a converged estimate by less


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=".", help="the DVC project holding models/ and data/prepared")
    parser.add_argument("--run", required=True)
    parser.add_argument("--images", type=int, default=100, help="the first N test images")
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--is-samples", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from vae_tf.ais import ais_log_likelihood
    from vae_tf.data import load_prepared
    from vae_tf.evaluation import importance_sampling
    from vae_tf.models import VAE  # noqa: F401  (registers the model class for loading)
    from vae_tf.provenance import write_result

    study = Path(args.study)
    model = keras.models.load_model(study / "models" / args.run / "model.keras")
    x_all = load_prepared(study / "data" / "prepared").test[:args.images]

    def estimates(start: str, chains: int, steps: int, x=x_all, z=None) -> np.ndarray:
        """log p(x) per image: IS (`start` "is"), or AIS from p(z) ("prior") or q(z|x)
        ("proposal"), forward, or in reverse from `z` (an exact draw of p(z|x) per image)."""
        @tf.function(jit_compile=True)
        def batch(xb, zb):
            prior, likelihood = model.prior_distribution(), model.likelihood.distribution
            seed = tf.constant([0, 1])
            if start == "is":
                q = model.proposal(xb, seed, 1000, 2.0).distribution
                return importance_sampling(xb, lambda _: q, likelihood, prior, args.is_samples, 250,
                                           tf.constant([2, 3]))["log_likelihood"]
            r = None if start == "prior" else model.proposal(xb, seed, 1000, 2.0).anywhere()[0]
            return ais_log_likelihood(xb, likelihood, prior, chains, steps, 1, 0.1, tf.constant([4, 5]),
                                      r, zb)["log_likelihood"]

        return np.concatenate([batch(tf.constant(x[i:i + args.batch_size]),
                                     None if z is None else tf.constant(z[i:i + args.batch_size])).numpy()
                               for i in range(0, len(x), args.batch_size)])

    def mean_se(values: np.ndarray, sign: str = "") -> str:
        return f"{values.mean():{sign}.2f} ± {values.std(ddof=1) / np.sqrt(len(values)):.2f}"

    c, t = args.chains, args.steps
    begin = time.perf_counter()
    reference = -estimates("is", 0, 0)
    rows = [f"| IS, K = {args.is_samples} | {mean_se(reference)} | | |"]
    for start in ("prior", "proposal"):
        settings = [(c, t), (2 * c, t), (c, 2 * t)]
        nll = {setting: -estimates(start, *setting) for setting in settings}
        for setting in settings:
            moved = nll[setting] - nll[settings[0]]
            above = nll[setting] - reference
            rows.append(f"| AIS from {'p(z)' if start == 'prior' else 'q(z|x)'}, {setting[0]} x {setting[1]} | "
                        f"{mean_se(nll[setting])} | {mean_se(above, '+')} | "
                        f"{'' if setting == settings[0] else mean_se(moved, '+')} |")
        print("\n".join(rows), flush=True)
    z_true = model.prior_distribution().sample(len(x_all), seed=[7, 8])  # BDMC: data simulated from the model
    x_simulated = model.likelihood.distribution(z_true).sample(seed=[7, 9]).numpy().astype(np.float32)
    bdmc = []
    for start in ("prior", "proposal"):
        lower, upper = (-estimates(start, c, t, x_simulated), -estimates(start, c, t, x_simulated, z_true.numpy()))
        bdmc.append(f"| AIS from {'p(z)' if start == 'prior' else 'q(z|x)'}, {c} x {t} | {mean_se(upper)} | "
                    f"{mean_se(lower)} | {mean_se(lower - upper)} |")
        print(bdmc[-1], flush=True)
    text = "\n".join([
        f"AIS against IS on the first {len(x_all)} test images of `{args.study}`'s run `{args.run}` (NLL in nats, "
        f"± one standard error over images; {time.perf_counter() - begin:.0f} s in all). A setting has converged "
        f"when doubling its chains or its steps moves it by less than {TOLERANCE} nat; an AIS NLL more than 1 nat "
        "above IS's did not converge (both are lower bounds on log p(x)).", "",
        "| estimator, chains x steps | NLL | minus IS's | moved by doubling |", "| --- | --- | --- | --- |", *rows,
        "", f"BDMC on {len(x_simulated)} images simulated from the model: NLL by forward AIS (an upper bound on the "
        "NLL, stochastically) and by reverse AIS from each image's own z (a lower bound); their gap bounds either's "
        "error on such data.", "",
        "| AIS | NLL, reverse (lower bound) | NLL, forward (upper bound) | gap |", "| --- | --- | --- | --- |", *bdmc])
    write_result(f"ais_convergence_{args.run}", " ".join(["python", *sys.argv]), text)


if __name__ == "__main__":
    main()
