"""Benchmark: how far AVB's discriminator is from the KL it stands for, on a trained implicit q.

An implicit posterior z = g(x, eps), eps ~ N(0, I) with as many noise as latent dimensions, has
q(z|x) = sum over the eps' with g(x, eps') = z of N(eps'; 0, I) / |det dg/deps'|, so at any draw

    log q(z|x) >= log N(eps; 0, I) - log |det dg/deps|   (equality where g(x, .) is one-to-one),

hence H(q) <= H(eps) + E log |det J| and, r the Gaussian with q's mean and scale (adaptive
contrast: E_q[-log r] = H(r)),

    KL(q || r) = H(r) - H(q) >= H(r) - H(eps) - E log |det J|,

against which T's estimate E_q[T] is printed. With the same draws: the bound AVB trains on (T in
place of log q - log r, the validation `bound`), the same with the Jacobian's log q (an ELBO
wherever g(x, .) is one-to-one, an upper bound on it otherwise), and the model's AIS estimate
of log p(x): a "bound" above the log-likelihood is no bound. Also the singular values of dg/deps
(how thin q is across some directions while its per-coordinate scale is not). Per test image,
averaged; the moments from the same `--draws` draws. Writes the table to docs/results/avb_kl_gap.md;
asserts nothing.

    dvc repro evaluate@avb && python benchmarks/avb_kl_gap.py --experiment avb
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="avb")
    parser.add_argument("--draws", type=int, default=256, help="draws of q(z|x) per test image")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from vae_tf.data import load_prepared
    from vae_tf.models import VAE  # noqa: F401  (registers the model class for loading)
    from vae_tf.networks import features
    from vae_tf.posteriors.fitted import sample_moments
    from vae_tf.posteriors.implicit import ImplicitPosterior
    from vae_tf.provenance import write_result
    from vae_tf.tfp import Normal, tfd

    model = keras.models.load_model(Path("models") / args.experiment / "model.keras")
    posterior, objective = model.posterior, model.objective
    if not isinstance(posterior, ImplicitPosterior) or posterior.noise_dim != posterior.latent_dim:
        raise SystemExit(f"experiment {args.experiment!r}: needs posterior kind 'implicit' with noise_dim equal to "
                         f"the latent dimension (a square dg/deps), got {posterior.kind!r}")
    if not objective.adaptive_contrast:
        raise SystemExit(f"experiment {args.experiment!r}: needs objective.adaptive_contrast (T against r)")
    ais = json.loads((Path("metrics") / f"{args.experiment}.json").read_text())["ais"]
    x_all = load_prepared(Path("data/prepared")).test
    noise_entropy = 0.5 * posterior.noise_dim * math.log(2 * math.pi * math.e)
    rows, singular = [], []
    for start in range(0, len(x_all), args.batch_size):
        x = tf.constant(x_all[start:start + args.batch_size])
        h = model.likelihood.network_input(x)
        f, batch, n = features(posterior.trunk, h), x.shape[0], args.draws
        eps = tf.random.stateless_normal([n * batch, posterior.noise_dim], [start, 0])
        f_rows = tf.reshape(tf.broadcast_to(f, [n, *f.shape]), [n * batch, -1])  # draw-major, as z [n, batch, L]
        with tf.GradientTape() as tape:
            tape.watch(eps)
            z_rows = posterior(f_rows, eps)
        jacobian = tape.batch_jacobian(z_rows, eps)  # [n * batch, L, L]
        values = tf.linalg.svd(jacobian, compute_uv=False)
        log_det = tf.reshape(tf.linalg.slogdet(jacobian).log_abs_determinant, [n, batch])
        z = tf.reshape(z_rows, [n, batch, -1])
        mean, scale = sample_moments(z)
        reference = tfd.Independent(Normal(mean, scale), 1)
        log_r, log_p = reference.log_prob(z), model.prior_distribution().log_prob(z)
        log_px = model.likelihood.distribution(z).log_prob(x)
        t = objective.discriminator(h, (z - mean) / scale)
        log_q_jacobian = tfd.Independent(Normal(0.0, tf.ones_like(eps)), 1).log_prob(eps)
        log_q_jacobian = tf.reshape(log_q_jacobian, [n, batch]) - log_det
        per_image = {
            "H(r)": reference.entropy(), "H(q) <=": noise_entropy + tf.reduce_mean(log_det, 0),
            "E_q[T]": tf.reduce_mean(t, 0),
            "-bound (T)": -tf.reduce_mean(log_px + log_p - log_r - t, 0),
            "-ELBO (Jacobian)": -tf.reduce_mean(log_px + log_p - log_q_jacobian, 0),
        }
        per_image["KL(q||r) >="] = per_image["H(r)"] - per_image["H(q) <="]
        rows.append({key: value.numpy() for key, value in per_image.items()})
        singular.append(np.sort(values.numpy(), axis=-1))
    singular = np.concatenate(singular)
    means = {key: float(np.mean(np.concatenate([row[key] for row in rows]))) for key in rows[0]}
    lines = [f"Experiment `{args.experiment}`, its {len(x_all)} test images, {args.draws} draws of q(z|x) each; "
             "per image, averaged (nats).", "", "| quantity | value |", "| --- | --- |",
             *(f"| {key.replace('|', chr(92) + '|')} | {means[key]:.2f} |"  # a | in a cell is escaped
               for key in ("H(r)", "H(q) <=", "KL(q||r) >=", "E_q[T]", "-bound (T)", "-ELBO (Jacobian)")),
             f"| NLL, AIS ({ais['estimator']}) | {ais['nll']:.2f} |", "",
             "Singular values of dg/deps, smallest first, median over draws: "
             + " ".join(f"{v:.3f}" for v in np.median(singular, axis=0)) + ".",
             f"Draws whose smallest singular value is below 1e-3: {np.mean(singular[:, 0] < 1e-3):.1%}."]
    print("\n".join(lines))
    write_result("avb_kl_gap", " ".join(["python", "benchmarks/avb_kl_gap.py", *sys.argv[1:]]), "\n".join(lines))


if __name__ == "__main__":
    main()
