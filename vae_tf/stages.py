"""The DVC stages: each reads `params.yaml`, calls the library and writes its declared outputs.

Paths (relative to the repository root, where `dvc repro` runs the stages):
    data/prepared/                  prepare
    models/<exp>/model.keras        train      (checkpoints/<exp>/ while it runs; dvclive/<exp>/)
    metrics/<exp>.json, plots/<exp>/  evaluate
    export/<exp>/<version>/         export
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from vae_tf.config import load_params
from vae_tf.data import load_prepared, prepare as prepare_data, save_prepared
from vae_tf.files import atomic_write, staged_directory

PREPARED = Path("data/prepared")


def model_path(name: str) -> Path:
    return Path("models") / name / "model.keras"


def prepare(params_path: str = "params.yaml") -> None:
    params = load_params(params_path)
    save_prepared(prepare_data(params.data, params.seed), PREPARED)


def _load_model(name: str):
    import keras

    import vae_tf.models  # noqa: F401  (registers the serializable classes)
    from vae_tf.errors import DataError

    path = model_path(name)
    if not path.exists():
        raise DataError(f"{path}: no trained model; run `dvc repro train@{name}` first")
    return keras.models.load_model(path)


def train(name: str, params_path: str = "params.yaml") -> None:
    from vae_tf.training import train as fit

    params = load_params(params_path).experiment(name)
    fit(params, load_prepared(PREPARED), model_path(name), Path("dvclive") / name, Path("checkpoints") / name)


def evaluate(name: str, params_path: str = "params.yaml") -> None:
    from vae_tf.evaluation import evaluate_model
    from vae_tf.plots import image_grid

    params = load_params(params_path).experiment(name)
    e = params.evaluation
    data = load_prepared(PREPARED)
    model = _load_model(name)
    start = time.perf_counter()
    result = evaluate_model(model, data.test, e.num_samples, e.chunk_size, e.batch_size, params.seed,
                            e.active_unit_threshold, jit_compile=params.training.jit_compile)
    metrics = {"experiment": name, **result["metrics"], "seconds": time.perf_counter() - start}

    with staged_directory(Path("plots") / name) as staging:
        n = min(e.num_plot_images, len(data.test))
        half = (n + 1) // 2
        vmax = float(data.meta.n_levels - 1) if data.meta.representation == "levels" else 1.0
        x, reconstruction = data.test[:n], model(data.test[:n]).numpy()
        image_grid([x[:half], reconstruction[:half], x[half:], reconstruction[half:]], data.meta.image_shape,
                   staging / "reconstructions.png", f"{name}: test images and reconstructions (mean of p(x|z=E[z|x]))",
                   ["data", "recon.", "data", "recon."], vmax)
        samples = model.likelihood(model.prior().sample(n, seed=[params.seed, 1])).mean().numpy()
        image_grid([samples[:half], samples[half:]], data.meta.image_shape, staging / "prior_samples.png",
                   f"{name}: mean of p(x|z), z ~ p(z)", vmax=vmax)
        rows = ["dimension,kl,posterior_mean_variance"]
        rows += [f"{j},{kl:.6g},{var:.6g}" for j, (kl, var) in enumerate(zip(result["kl_per_dim"], result["activity"]))]
        (staging / "latent_dimensions.csv").write_text("\n".join(rows) + "\n")
    atomic_write(Path("metrics") / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=2) + "\n"))


def export(name: str, params_path: str = "params.yaml") -> None:
    from vae_tf.export import export_model

    params = load_params(params_path).experiment(name)
    model = _load_model(name)
    with staged_directory(Path("export") / name) as staging:
        export_model(model, staging / str(params.export.version), params.export.chunk_size)
