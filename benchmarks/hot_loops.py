"""Benchmark: the hot loops of the default pipeline, each against this machine's own float32
matrix-product rate (a 2048^2 product under XLA, measured first), in one run. Writes the table
to docs/results/hot_loops.md; asserts nothing.

- VAE epoch (the `vae` experiment: K = 1, batch 64, validation and callbacks counted), seconds;
- IWAE epoch (the `iwae` experiment, K = 50): the decoder's forward and backward work over the
  epoch's time (so the whole epoch is charged to the decoder: a lower bound on its own rate);
- importance sampling, K = evaluation.num_samples, on the test images (`model_log_likelihood`
  under XLA, evaluation.batch_size images a call): seconds, decoder forward work, peak memory;
- AIS at evaluation.ais (evaluation.batch_size images): milliseconds per step, the decoder's
  forward pass and its gradient with respect to z (2 x forward) over the step's time;
- a 50,000-image 28x28 set (digits upsampled, 256 grey levels) with dynamic binarization, the
  IWAE paper's 784-200-200-50 network, Bernoulli, batch 100: training images per second and
  the encoder and decoder work (3 x forward) over the epoch's time;
- the 28x28 study's importance sampling on that model: K = 5000 over 10,000 test images (500
  timed), the decoder's forward work over its time, against 1.3 x the time at the measured rate;
- each of the last two beside the same work written as a bare `tf.function` loop under XLA
  (`bare_epoch`, `bare_importance_sampling`): what this machine and TensorFlow give for these
  shapes, so that the distance to the rate splits into vae-tf's share and the kernels';
- a uniform random draw under XLA with each algorithm (`vae_tf.tfp.random_algorithm`);
- a 500-component mixture prior's log-density (the study's `vp_mixture`, L = 40) at 10,000
  draws (one chunk of the study's importance sampling) under XLA: `GaussianMixture`'s matrix
  products against TFP's `MixtureSameFamily`;
- a hierarchical posterior's q(z|x, psi) at K_tau = 8 auxiliary values for one chunk of the
  study's importance sampling (`vp_iwhvi`) under XLA: `apply_beside`, x's part of the first
  layer once per image, against x copied beside every psi.

Work is counted from the dense and convolutional layers (2 x multiply-adds); seconds are medians
over epochs or calls after the first, which compiles.

    python benchmarks/hot_loops.py
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from conv_images import digits_images, forward_flop, matmul_gflops  # noqa: E402
from vae_tf.ais import ais_log_likelihood  # noqa: E402
from vae_tf.config import Params, load_params  # noqa: E402
from vae_tf.data import DataParams, prepare  # noqa: E402
from vae_tf.evaluation import model_log_likelihood  # noqa: E402
from vae_tf.networks import apply_beside, apply_to_leading, mlp  # noqa: E402
from vae_tf.priors.mixture import GaussianMixture  # noqa: E402
from vae_tf.provenance import write_result  # noqa: E402
from vae_tf.tfp import tfd  # noqa: E402
from vae_tf.training import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def trained(params: Params, data, epochs: int):
    """`epochs` of the training stage's code (no early stopping); the model and the median
    seconds of the epochs after the first."""
    params = params.model_copy(update={"training": params.training.model_copy(
        update={"epochs": epochs, "early_stopping_patience": epochs})})
    with tempfile.TemporaryDirectory() as tmp:
        history = train(params, data, Path(tmp) / "model.keras", Path(tmp) / "live", Path(tmp) / "backup").history
        model = keras.models.load_model(Path(tmp) / "model.keras")
    return model, float(np.median(history["epoch_seconds"][1:]))


def step_flop(model, dimension: int) -> tuple[float, float]:
    """Forward work per example of the encoder and of the decoder."""
    return (forward_flop(model.posterior.network, (None, dimension)),
            forward_flop(model.likelihood.network, (None, model.latent_dim)))


def median_seconds(call, repeats: int = 3) -> float:
    call()  # compiles
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def minibatches(x: np.ndarray, size: int) -> list[tf.Tensor]:
    """x in minibatches of `size`, the last padded with zeros (one shape for XLA)."""
    x = np.concatenate([x, np.zeros((-len(x) % size, x.shape[1]), np.float32)])
    return [tf.constant(x[i:i + size]) for i in range(0, len(x), size)]


def log_likelihood(model, num_samples: int, e):
    """The exported `log_likelihood` under XLA, with evaluation params `e`'s chunk and proposal."""
    return tf.function(lambda xb: model_log_likelihood(model, xb, num_samples, e.chunk_size, e.proposal_samples,
                                                       e.proposal_scale, tf.constant([0, 1])), jit_compile=True)


def dense_stack(sizes: list[int], seed: int) -> list[tf.Variable]:
    rng = np.random.default_rng(seed)
    return [tf.Variable(rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32)) for a, b in zip(sizes[:-1], sizes[1:])]


def through(h, weights):
    """tanh between the layers, linear out (no biases)."""
    for i, w in enumerate(weights):
        h = h @ w if i == len(weights) - 1 else tf.tanh(h @ w)
    return h


def bare_epoch(x: np.ndarray, batch: int, latent: int, hidden: list[int]) -> float:
    """Seconds of one epoch of the same work as a bare `tf.function` under XLA, nothing of Keras or
    vae-tf around it: dynamic binarization, encoder, z = mu + sigma * eps, decoder, Bernoulli
    log-density, analytic KL, gradients and an Adam step (m, v: moving averages of g and g^2;
    w -= lr m / (sqrt(v) + eps), bias correction left out), `batch` images a step in one
    `tf.while_loop` (no biases, no validation)."""
    encoder, decoder = dense_stack([x.shape[1], *hidden, 2 * latent], 0), dense_stack([latent, *hidden[::-1], x.shape[1]], 1)
    weights = encoder + decoder
    moments = [(tf.Variable(tf.zeros_like(w)), tf.Variable(tf.zeros_like(w))) for w in weights]
    steps, images = len(x) // batch, tf.constant(x[:len(x) // batch * batch].reshape(len(x) // batch, batch, -1))

    @tf.function(jit_compile=True)
    def epoch():
        def body(i):
            xb = tf.cast(tf.random.stateless_uniform(tf.shape(images[i]), [i, 0], alg="threefry") < images[i], tf.float32)
            with tf.GradientTape() as tape:
                mu, log_sigma = tf.split(through(xb, encoder), 2, axis=-1)
                z = mu + tf.exp(log_sigma) * tf.random.stateless_normal(tf.shape(mu), [i, 1], alg="threefry")
                log_px = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(xb, through(z, decoder)), -1)
                kl = 0.5 * tf.reduce_sum(tf.exp(2 * log_sigma) + mu ** 2 - 1 - 2 * log_sigma, -1)
                loss = -tf.reduce_mean(log_px - kl)
            for w, (m, v), g in zip(weights, moments, tape.gradient(loss, weights)):
                m.assign(0.9 * m + 0.1 * g)
                v.assign(0.999 * v + 0.001 * g * g)
                w.assign_sub(1e-3 * m / (tf.sqrt(v) + 1e-7))
            return (i + 1,)
        return tf.while_loop(lambda i: i < steps, body, (tf.constant(0),))

    return median_seconds(lambda: epoch()[0].numpy())


def bare_importance_sampling(x: np.ndarray, num_samples: int, chunk: int, latent: int, hidden: list[int]) -> float:
    """Seconds of importance sampling's decoder work on x [batch, D] as a bare `tf.function` under
    XLA: `chunk` standard normal draws at a time through the decoder, TFP's Bernoulli log-density,
    the log-sum-exp accumulated (no encoder, no prior or q densities)."""
    decoder, x = dense_stack([latent, *hidden[::-1], x.shape[1]], 1), tf.constant(x)

    @tf.function(jit_compile=True)
    def estimate():
        def body(i, total):
            z = tf.random.stateless_normal([chunk, x.shape[0], latent], [i, 2], alg="threefry")
            log_px = tfd.Independent(tfd.Bernoulli(logits=through(z, decoder)), 1).log_prob(x)
            return i + 1, tf.reduce_logsumexp(tf.stack([total, tf.reduce_logsumexp(log_px, 0)]), 0)
        return tf.while_loop(lambda i, _: i < num_samples // chunk, body, (0, tf.fill([x.shape[0]], -np.inf)))[1]

    return median_seconds(lambda: estimate().numpy(), repeats=1)


def uniform_draw_ns(alg: str, steps: int = 500, shape=(100, 784)) -> float:
    """Nanoseconds a uniform draw under XLA with `alg` (`steps` draws of `shape` in one loop:
    dynamic binarization's draws over a 50,000-image 28x28 epoch)."""
    @tf.function(jit_compile=True)
    def draws():
        def body(i, total):
            return i + 1, total + tf.reduce_sum(tf.random.stateless_uniform(shape, [i, 0], alg=alg))
        return tf.while_loop(lambda i, _: i < steps, body, (0, 0.0))[1]

    return median_seconds(lambda: draws().numpy()) / (steps * np.prod(shape)) * 1e9


def mixture_density_ms(mixture: type, draws: int, components: int, latent: int) -> float:
    """Milliseconds of log p(z) under XLA at `draws` z under a mixture (the class `mixture`, built
    as TFP's `MixtureSameFamily`) of `components` diagonal Gaussians in `latent` dimensions."""
    rng = np.random.default_rng(0)
    prior = mixture(tfd.Categorical(logits=tf.zeros(components)), tfd.Independent(tfd.Normal(
        rng.normal(size=(components, latent)).astype("float32"), np.ones((components, latent), "float32")), 1))
    z = tf.constant(rng.normal(size=(draws, latent)), tf.float32)
    density = tf.function(prior.log_prob, jit_compile=True)
    return median_seconds(lambda: density(z).numpy(), repeats=5) * 1e3


def beside_ms(split: bool, draws: int, batch: int, data: int, drawn: int, hidden: list[int], outputs: int) -> float:
    """Milliseconds under XLA of an MLP on [x, v] for `draws` v [draws, batch, drawn] per image x
    [batch, data]: `apply_beside` (`split`) or the network on x copied beside every draw."""
    rng = np.random.default_rng(0)
    network = mlp(hidden, outputs, "tanh", "network")
    network.build((None, data + drawn))
    x = tf.constant(rng.random((batch, data)), tf.float32)
    v = tf.constant(rng.normal(size=(draws, batch, drawn)), tf.float32)
    copied = lambda: apply_to_leading(network, tf.concat([tf.broadcast_to(x, [draws, batch, data]), v], axis=-1))
    call = tf.function(lambda: apply_beside(network.layers, x, v) if split else copied(), jit_compile=True)
    return median_seconds(lambda: call().numpy(), repeats=5) * 1e3


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row(name: str, figure: str, gflops: float, rate: float, target: str) -> str:
    """A row of the table, printed as it is measured."""
    line = f"| {name} | {figure} | {gflops:.1f} | {gflops / rate:.0%} | {target} |"
    print(line, flush=True)
    return line


def main() -> None:
    rate = matmul_gflops()
    lines = [f"TensorFlow {tf.__version__}, devices {[d.device_type for d in tf.config.list_physical_devices()]}; "
             f"matrix products: {rate:.0f} GFLOP/s.", "",
             "| loop | figure | GFLOP/s | of rate | target |", "| --- | --- | --- | --- | --- |"]
    os.chdir(ROOT)
    params = load_params("params.yaml")
    vae_params, iwae_params = params.experiment("vae"), params.experiment("iwae")
    digits = prepare(vae_params.data, vae_params.seed)
    n_train, dimension = len(digits.train), digits.meta.dimension

    model, seconds = trained(vae_params, digits, epochs=15)
    encoder, decoder = step_flop(model, dimension)
    lines.append(row("VAE epoch (K=1, batch 64)", f"{seconds:.3f} s", 3 * (encoder + decoder) * n_train / seconds / 1e9,
                     rate, "<= 0.022 s (issue 14)"))

    k = iwae_params.objective.num_samples
    _, seconds = trained(iwae_params, digits, epochs=6)
    lines.append(row(f"IWAE epoch (K={k}), decoder", f"{seconds:.3f} s", 3 * decoder * n_train * k / seconds / 1e9,
                     rate, ">= 70 % of the rate (issue 14)"))

    e = params.evaluation
    batches = minibatches(digits.test, e.batch_size)
    small = log_likelihood(model, e.num_samples // 10, e)
    start = peak_mib()
    [small(xb).numpy() for xb in batches]  # the peak memory of K / 10, to compare K with
    middle = peak_mib()
    full = log_likelihood(model, e.num_samples, e)
    seconds = median_seconds(lambda: [full(xb).numpy() for xb in batches], repeats=1)
    lines.append(row(f"importance sampling, K={e.num_samples}", f"{seconds:.2f} s / {len(digits.test)} images",
                     decoder * len(digits.test) * e.num_samples / seconds / 1e9, rate, "<= 8 s, memory flat in K (issue 14)"))
    memory = (f"Importance sampling's peak memory grew {middle - start:.0f} MiB for K = {e.num_samples // 10}, "
              f"{peak_mib() - middle:.0f} MiB more for K = {e.num_samples}.")

    ais = e.ais
    annealed = tf.function(lambda xb: ais_log_likelihood(
        xb, model.likelihood.distribution, model.prior_distribution(), ais.num_chains, ais.num_steps,
        ais.leapfrog_steps, ais.step_size, tf.constant([0, 2]))["log_likelihood"], jit_compile=True)
    seconds = median_seconds(lambda: annealed(batches[0]).numpy()) / ais.num_steps
    lines.append(row(f"AIS step ({e.batch_size} images x {ais.num_chains} chains)", f"{seconds * 1e3:.2f} ms",
                     2 * decoder * e.batch_size * ais.num_chains * ais.leapfrog_steps / seconds / 1e9, rate,
                     "<= 4.23 ms (8.46 / 2, issue 14)"))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npz"
        images = digits_images(52000, 28, seed=0, levels=256)
        np.savez(path, train=images[:51000], test=images[51000:], n_levels=256)
        data = prepare(DataParams(source="npz", path=str(path), preprocessing="dynamic_binarize", validation_size=1000), 0)
    big = Params.model_validate({
        "data": {"preprocessing": "dynamic_binarize"},
        "model": {"latent_dim": 50, "hidden_units": [200, 200], "likelihood": "bernoulli"},
        "training": {"batch_size": 100}})
    model, seconds = trained(big, data, epochs=3)
    encoder, decoder = step_flop(model, data.meta.dimension)
    lines.append(row(f"{len(data.train)} images, 784-200-200-50", f"{len(data.train) / seconds:.0f} images/s",
                     3 * (encoder + decoder) * len(data.train) / seconds / 1e9, rate, ">= 60 % of the rate (issue 27)"))
    bare = bare_epoch(data.train, 100, 50, [200, 200])
    lines.append(row("... the same epoch as a bare XLA loop", f"{len(data.train) / bare:.0f} images/s "
                     f"(vae-tf takes {seconds / bare:.2f} x its time)", 3 * (encoder + decoder) * len(data.train) / bare / 1e9,
                     rate, "reference"))
    # the 28x28 study's evaluation: K = 5000, 100 draws a chunk, 100 images a call; timed on 500 images
    study = e.model_copy(update={"num_samples": 5000, "chunk_size": 100, "batch_size": 100})
    full = log_likelihood(model, study.num_samples, study)
    seconds = median_seconds(lambda: [full(xb).numpy() for xb in minibatches(data.test[:500], 100)], repeats=1) * 20
    work = decoder * 10000 * study.num_samples
    lines.append(row("importance sampling, K=5000, 784-200-200-50", f"{seconds:.0f} s / 10000 images (500 timed)",
                     work / seconds / 1e9, rate, f"<= {1.3 * work / rate / 1e9:.0f} s (1.3 x the rate's floor, issue 27)"))
    bare = 100 * bare_importance_sampling(data.test[:100], study.num_samples, study.chunk_size, 50, [200, 200])
    lines.append(row("... its decoder work as a bare XLA loop", f"{bare:.0f} s / 10000 images (100 timed; vae-tf takes "
                     f"{seconds / bare:.2f} x its time)", work / bare / 1e9, rate, "reference"))
    draw = {alg: uniform_draw_ns(alg) for alg in ("threefry", "philox", "auto_select")}
    lines.append(f"| a uniform draw under XLA, ThreeFry (vae-tf's) | {draw['threefry']:.1f} ns (Philox "
                 f"{draw['philox']:.1f}, auto_select {draw['auto_select']:.1f}) | | | reference |")
    print(lines[-1], flush=True)
    size = {"draws": 10000, "components": 500, "latent": 40}  # the study's vp_mixture, one chunk of its IS
    ours, tfps = mixture_density_ms(GaussianMixture, **size), mixture_density_ms(tfd.MixtureSameFamily, **size)
    lines.append(row("log p(z), {components}-component mixture, {draws} draws, L={latent}".format(**size),
                     f"{ours:.1f} ms (TFP's MixtureSameFamily {tfps:.1f} ms: {tfps / ours:.1f} x)",
                     4 * np.prod(list(size.values())) / ours / 1e6, rate, "reference"))  # two products, 2 N C L each
    # the study's vp_iwhvi, one chunk of its IS: q(z|x, psi) at K_tau = 8 auxiliary values for 100 draws of
    # 100 images (784 pixels, A = 16, 300-300, a Gaussian over L = 40)
    size = {"draws": 800, "batch": 100, "data": 784, "drawn": 16, "hidden": [300, 300], "outputs": 80}
    split, copied = beside_ms(True, **size), beside_ms(False, **size)
    work = 2 * size["draws"] * size["batch"] * (16 * 300 + 300 * 300 + 300 * 80)  # what the split leaves
    lines.append(row("q(z\\|x, psi), 300-300 on [x, psi], {draws} x {batch} psi".format(**size),
                     f"{split:.1f} ms (x copied beside each psi: {copied:.1f} ms, {copied / split:.1f} x)",
                     work / split / 1e6, rate, "reference"))
    write_result("hot_loops", "python benchmarks/hot_loops.py", "\n".join([*lines, "", memory]))


if __name__ == "__main__":
    main()
