"""vae-tf against pythae (PyTorch) on the same data, networks, epochs, batch size and estimator.

Run from the repository root with the project's environment; pythae's side runs in its own
environment (`--peer-python`, made from benchmarks/peers/requirements.txt), in a subprocess of
this script, one model after the other:

    python benchmarks/peers/pythae_fashion.py --peer-python ../peers-venv/bin/python --epochs 10

Both sides train on the study's prepared data (`cd studies/fashion_mnist && dvc repro prepare`:
Fashion-MNIST, dynamically binarized: each training image redrawn x ~ Bernoulli(intensity) at each
step; validation and test images binarized once) with Adam at 1e-3, batch 100, and each model's
networks as the study's experiment of the same name (tanh MLPs; pythae's through its BaseEncoder /
BaseDecoder). Test NLL by importance sampling from q(z|x) with the same K on the same first
`--test-images` test images (vae-tf: `evaluate_model`; pythae: its own `get_nll`). Seconds per
epoch: the median over epochs, validation included, on both sides.

The models: VAE and IWAE K = 50 (784-200-200-50), the VampPrior with 500 pseudo-inputs and an IAF
posterior (784-300-300-40; pythae's IAF: 2 MADE blocks of 2 hidden layers of 64, not conditioned on
a context from the encoder as vae-tf's is).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = Path("studies/fashion_mnist")
MODELS = {"vae": "vae", "iwae50": "iwae50", "vamp": "vp_vamp", "iaf": "vp_iaf"}  # peer name -> study experiment


def load(prepared: Path):
    import numpy as np

    arrays = {}
    for split in ("train", "val", "test"):
        with np.load(prepared / f"{split}.npz") as archive:
            arrays[split] = archive["x"].reshape(-1, 784).astype("float32")
    return arrays


# --- pythae's side (its own environment) ------------------------------------------------


def pythae_side(model_name: str, settings: dict) -> dict:
    import torch
    from torch import nn
    from pythae.data.datasets import BaseDataset, DatasetOutput
    from pythae.models import IWAE, IWAEConfig, VAE, VAEConfig, VAE_IAF, VAE_IAF_Config, VAMP, VAMPConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback

    torch.manual_seed(settings["seed"])
    hidden, latent = settings["hidden_units"], settings["latent_dim"]

    def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        return nn.Sequential(*layers)

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.body, self.out = mlp([784, *hidden]), nn.Linear(hidden[-1], 2 * latent)

        def forward(self, x):
            mean, log_var = self.out(self.body(x.reshape(len(x), -1))).chunk(2, dim=-1)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.body, self.out = mlp([latent, *hidden[::-1]]), nn.Linear(hidden[0], 784)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.out(self.body(z))).reshape(len(z), 1, 28, 28))

    class Binarized(BaseDataset):
        """Dynamic binarization: each access draws x ~ Bernoulli(intensity)."""

        def __init__(self, intensities, dynamic):
            self.data, self.labels, self.dynamic = torch.from_numpy(intensities), torch.zeros(len(intensities)), dynamic

        def __getitem__(self, index):
            x = self.data[index]
            return DatasetOutput(data=(torch.bernoulli(x) if self.dynamic else x).reshape(1, 28, 28))

    class EpochTimes(TrainingCallback):
        def __init__(self):
            self.times = [time.perf_counter()]

        def on_epoch_end(self, training_config, **kwargs):
            self.times.append(time.perf_counter())

    common = dict(input_dim=(1, 28, 28), latent_dim=latent, reconstruction_loss="bce")
    config, cls = {"vae": (VAEConfig(**common), VAE), "iwae50": (IWAEConfig(**common, number_samples=50), IWAE),
                   "vamp": (VAMPConfig(**common, number_components=500), VAMP),
                   "iaf": (VAE_IAF_Config(**common, n_made_blocks=2, n_hidden_in_made=2, hidden_size=64), VAE_IAF)}[model_name]
    model = cls(config, encoder=Encoder(), decoder=Decoder())
    data = load(Path(settings["prepared"]))
    clock = EpochTimes()
    with tempfile.TemporaryDirectory() as out:
        trainer = BaseTrainer(model, Binarized(data["train"], True), Binarized(data["val"], False),
                              BaseTrainerConfig(output_dir=out, num_epochs=settings["epochs"], learning_rate=1e-3,
                                                per_device_train_batch_size=100, per_device_eval_batch_size=100,
                                                optimizer_cls="Adam", no_cuda=True, seed=settings["seed"]),
                              callbacks=[clock])
        trainer.train()
    model = trainer._best_model.eval()  # the best on validation, as vae-tf's early stopping keeps
    test = torch.from_numpy(data["test"][:settings["test_images"]]).reshape(-1, 1, 28, 28)
    start = time.perf_counter()
    with torch.no_grad():
        nll = -model.get_nll(test, n_samples=settings["num_samples"], batch_size=100)
    epochs = [b - a for a, b in zip(clock.times[:-1], clock.times[1:])]
    return {"nll": float(nll), "seconds_per_epoch": statistics.median(epochs), "eval_seconds": time.perf_counter() - start,
            "epochs": len(epochs), "threads": torch.get_num_threads()}


# --- vae-tf's side (this environment) ---------------------------------------------------


def ours(experiment: str, settings: dict) -> dict:
    import os

    import keras

    import vae_tf.models  # noqa: F401  (registers the parts for loading)
    from vae_tf.config import Params, load_params
    from vae_tf.data import load_prepared
    from vae_tf.evaluation import evaluate_model
    from vae_tf.models import uses_xla
    from vae_tf.training import train

    merged = load_params(STUDY / "params.yaml").experiment(experiment).model_dump()
    merged["training"].update(epochs=settings["epochs"], early_stopping_patience=settings["epochs"])
    merged["evaluation"].update(num_samples=settings["num_samples"], ais=None)
    params = Params.model_validate({**merged, "seed": settings["seed"]})
    data = load_prepared(Path(settings["prepared"]))
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as out:
        os.chdir(out)  # dvclive looks for a repository from the working directory
        try:
            train(params, data, Path(out) / "model.keras", Path(out) / "live", Path(out) / "backup")
            summary = json.loads((Path(out) / "live" / "metrics.json").read_text())
            model = keras.models.load_model(Path(out) / "model.keras")
        finally:
            os.chdir(cwd)
    start, estimated = time.perf_counter(), {}
    metrics = evaluate_model(model, data.test[:settings["test_images"]], params.evaluation, params.seed,
                             jit_compile=uses_xla(params),
                             finished=lambda _: estimated.setdefault("seconds", time.perf_counter() - start))["metrics"]
    return {"nll": metrics["nll"], "seconds_per_epoch": summary["seconds_per_epoch_median"],
            "eval_seconds": estimated["seconds"], "surgery_seconds": time.perf_counter() - start - estimated["seconds"],
            "epochs": summary["epochs_run"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer-python", default="../peers-venv/bin/python", help="python of the peers' environment")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=5000, help="importance samples K per test image")
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="pythae_fashion", help="the table's file: docs/results/<name>.md")
    parser.add_argument("--side", choices=["pythae"], help=argparse.SUPPRESS)  # the subprocess's mode
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--networks", help=argparse.SUPPRESS)  # JSON: hidden_units, latent_dim
    args = parser.parse_args()
    settings = {"epochs": args.epochs, "num_samples": args.num_samples, "test_images": args.test_images,
                "seed": args.seed, "prepared": str(STUDY / "data" / "prepared"), **json.loads(args.networks or "{}")}
    if args.side == "pythae":
        print(json.dumps(pythae_side(args.model, settings)))
        return
    from vae_tf.config import load_params
    from vae_tf.provenance import write_result

    rows = []
    for name in args.models:
        experiment = MODELS[name]
        model = load_params(STUDY / "params.yaml").experiment(experiment).model
        peer = subprocess.run([args.peer_python, __file__, "--side", "pythae", "--model", name,
                               "--epochs", str(args.epochs), "--num-samples", str(args.num_samples),
                               "--test-images", str(args.test_images), "--seed", str(args.seed), "--networks",
                               json.dumps({"hidden_units": list(model.hidden_units), "latent_dim": model.latent_dim})],
                              capture_output=True, text=True)
        if peer.returncode != 0:
            sys.exit(f"pythae's side of {name} failed:\n{peer.stderr[-3000:]}")
        theirs = json.loads(peer.stdout.strip().splitlines()[-1])
        mine = ours(experiment, settings)
        rows.append((name, model, mine, theirs))
        print(f"{name}: vae-tf {mine}, pythae {theirs}", file=sys.stderr, flush=True)
        # the table so far, rewritten after each model: a long run that stops keeps its rows
        write_result(args.name, " ".join(["python", "benchmarks/peers/pythae_fashion.py", *sys.argv[1:]]),
                     table(rows, args))


def table(rows: list, args: argparse.Namespace) -> str:
    """The side-by-side, one row a model."""
    lines = [f"Fashion-MNIST (dynamic binarization), {args.epochs} epochs, batch 100, Adam 1e-3; test NLL by IS, "
             f"K = {args.num_samples}, first {args.test_images} test images; seed {args.seed}. pythae in its own "
             "environment (benchmarks/peers/requirements.txt); both sides timed on the same machine in one run, "
             "one after the other.", "",
             "Eval s: vae-tf's estimates (IS with that K, which pythae's `get_nll` computes, and L_K, KL per "
             "dimension and the posterior means beside it), then the ELBO surgery it adds (pythae has none), apart.",
             "",
             "| model | networks | NLL vae-tf | NLL pythae | s / epoch vae-tf | s / epoch pythae | speed-up | "
             "eval s vae-tf | eval s pythae | eval speed-up | + surgery s vae-tf |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, model, mine, theirs in rows:
        lines.append(f"| {name} | 784-{'-'.join(map(str, model.hidden_units))}-{model.latent_dim} | {mine['nll']:.2f} | "
                     f"{theirs['nll']:.2f} | {mine['seconds_per_epoch']:.2f} | {theirs['seconds_per_epoch']:.2f} | "
                     f"{theirs['seconds_per_epoch'] / mine['seconds_per_epoch']:.1f}x | {mine['eval_seconds']:.0f} | "
                     f"{theirs['eval_seconds']:.0f} | {theirs['eval_seconds'] / mine['eval_seconds']:.1f}x | "
                     f"{mine['surgery_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
