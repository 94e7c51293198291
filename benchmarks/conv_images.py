"""Benchmark: the network kinds (`model.network`: mlp, conv, resnet) training a VAE on image-shaped
data available offline: scikit-learn's digits upsampled to SIZE x SIZE (bilinear), shifted by up to
two pixels at random and binarized, as an `npz` source of (N, SIZE, SIZE) arrays prepared by the
pipeline's own code. Prints, per kind: training images per second (median epoch, compilation
excluded), the floating-point work of a training step (3 x the forward pass of encoder and
decoder, counted from the layers), the rate that achieves, its fraction of this machine's
matrix-product rate (measured here: a 2048^2 float32 product under XLA), and the validation ELBO
after the epochs run; each kind on one device and under MirroredStrategy on the first GPU (or
the CPU) split into `--replicas` logical devices ("x2"), through the training stage's own code
(`vae_tf.training.train`, validation and callbacks in the epoch's time). Writes the table to
docs/results/conv_images.md; asserts nothing.

    python benchmarks/conv_images.py --images 10000 --size 28 --epochs 4
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

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from vae_tf.config import Params  # noqa: E402
from vae_tf.data import DataParams, prepare  # noqa: E402
from vae_tf.networks import ResidualBlock  # noqa: E402
from vae_tf.provenance import write_result  # noqa: E402
from vae_tf.training import train  # noqa: E402

NETWORKS = {"mlp": {"kind": "mlp"}, "conv": {"kind": "conv", "filters": [32, 64]},
            "resnet": {"kind": "resnet", "filters": [32, 64], "blocks": 1}}


def digits_images(count: int, size: int, seed: int, levels: int = 2) -> np.ndarray:
    """`count` images [count, size, size] of `levels` grey levels (uint8): digits resized and
    shifted; 2 levels: thresholded at intensity 0.5, else intensities rounded to the levels."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits().images[rng.integers(0, 1797, count)][..., None] / 16.0
    images = tf.image.resize(digits.astype(np.float32), [size - 4, size - 4]).numpy()[..., 0]
    images = images > 0.5 if levels == 2 else np.round(np.clip(images, 0.0, 1.0) * (levels - 1))
    shifts = rng.integers(0, 5, (count, 2))
    out = np.zeros((count, size, size), np.uint8)
    for i, (dy, dx) in enumerate(shifts):
        out[i, dy:dy + size - 4, dx:dx + size - 4] = images[i]
    return out


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matrix-product rate, best of 5 timings of `repeats` products."""
    a = tf.random.stateless_normal([n, n], seed=[0, 1])

    @tf.function(jit_compile=True)
    def products(a):
        b = a
        for _ in range(repeats):
            b = tf.matmul(a, b) * 1e-3
        return b

    products(a).numpy()
    best = min(_timed(lambda: products(a).numpy()) for _ in range(5))
    return 2 * n**3 * repeats / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def forward_flop(network: keras.Sequential, input_shape) -> float:
    """Multiply-adds x 2 of one example through `network`'s dense and convolutional layers."""
    x, total = tf.zeros([1, *input_shape[1:]]), 0.0
    for layer in network.layers:
        y = layer(x)
        if isinstance(layer, keras.layers.Dense):
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2DTranspose):  # each input pixel scatters a k x k x C_out patch
            total += 2 * np.prod(x.shape[1:3]) * np.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Conv2D):
            total += 2 * np.prod(y.shape[1:3]) * np.prod(layer.kernel.shape)
        elif isinstance(layer, ResidualBlock):
            total += sum(2 * np.prod(y.shape[1:3]) * np.prod(conv.kernel.shape) for conv in layer.convolutions)
        x = y
    return total


def one_kind(name: str, data, epochs: int, seed: int, devices: list[str] | None = None) -> dict:
    """`epochs` of the training stage (`vae_tf.training.train`) for network `name`, on one device
    or, with `devices`, under MirroredStrategy on them."""
    params = Params.model_validate({
        "seed": seed, "data": {"preprocessing": "binarize"},
        "model": {"latent_dim": 16, "hidden_units": [256], "network": NETWORKS[name], "likelihood": "bernoulli"},
        "training": {"epochs": epochs, "batch_size": 64, "early_stopping_patience": epochs,
                     "distribute": {"strategy": "mirrored", "devices": devices} if devices else None}})
    with tempfile.TemporaryDirectory() as tmp:
        history = train(params, data, Path(tmp) / "model.keras", Path(tmp) / "live", Path(tmp) / "backup").history
        model = keras.models.load_model(Path(tmp) / "model.keras")
    seconds = float(np.median(history["epoch_seconds"][1:]))  # the first epoch compiles
    flop = 3 * (forward_flop(model.posterior.network, (None, data.meta.dimension))
                + forward_flop(model.likelihood.network, (None, 16)))
    images_per_second = len(data.train) / seconds
    return {"images_per_second": images_per_second, "gflop_per_image": flop / 1e9,
            "gflops": images_per_second * flop / 1e9, "val_elbo": float(history["val_elbo"][-1]),
            "parameters": model.count_params()}


def split_device(count: int) -> list[str]:
    """The first GPU (or the CPU) as `count` logical devices; call before TensorFlow starts."""
    gpus = tf.config.list_physical_devices("GPU")
    config = tf.config.LogicalDeviceConfiguration(memory_limit=8192 if gpus else None)
    tf.config.set_logical_device_configuration((gpus or tf.config.list_physical_devices("CPU"))[0], [config] * count)
    return [f"/{'gpu' if gpus else 'cpu'}:{i}" for i in range(count)]


def run_in_child(args, name: str, replicas: int) -> dict:
    """`one_kind` in a process of its own (two MirroredStrategy objects over the same devices in
    one process clash in their collective ops); its result, printed as JSON, read back."""
    command = [sys.executable, __file__, "--run", name, "--replicas", str(replicas), "--images", str(args.images),
               "--size", str(args.size), "--epochs", str(args.epochs)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kinds", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--replicas", type=int, default=2,
                        help="also train each kind under MirroredStrategy on the first GPU (or the CPU) split into "
                             "this many logical devices (1: not)")
    parser.add_argument("--run", choices=list(NETWORKS), help=argparse.SUPPRESS)  # one run, in a child process
    args = parser.parse_args()
    if args.run:
        devices = split_device(args.replicas) if args.replicas > 1 else None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "images.npz"
            images = digits_images(args.images + 1000, args.size, seed=0)
            np.savez(path, train=images[:args.images], test=images[args.images:], n_levels=2)
            data = prepare(DataParams(source="npz", path=str(path), preprocessing="binarize", validation_size=1000), seed=0)
        print(json.dumps({**one_kind(args.run, data, args.epochs, seed=0, devices=devices), "sizes": data.meta.sizes,
                          "image_shape": data.meta.image_shape}))
        return
    rate = matmul_gflops()
    lines = ["| kind | images / s | MFLOP / image | GFLOP/s | of matmul | val. ELBO | parameters |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, replicas in [(name, n) for name in args.kinds for n in sorted({1, args.replicas})]:
        r = run_in_child(args, name, replicas)
        label = f"{name} x{replicas}" if replicas > 1 else name
        lines.append(f"| {label} | {r['images_per_second']:.0f} | {r['gflop_per_image'] * 1e3:.2f} | {r['gflops']:.1f} | "
                     f"{r['gflops'] / rate:.1%} | {r['val_elbo']:.2f} | {r['parameters']} |")
        print(lines[-1], flush=True)
    lines = [f"TensorFlow {tf.__version__}, devices {[d.device_type for d in tf.config.list_physical_devices()]}; "
             f"matrix products: {rate:.0f} GFLOP/s; data {r['sizes']}, image shape {r['image_shape']}, "
             f"{args.epochs} epochs.", "", *lines]
    write_result("conv_images", " ".join(["python", "benchmarks/conv_images.py", *sys.argv[1:]]), "\n".join(lines))


if __name__ == "__main__":
    main()
