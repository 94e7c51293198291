"""The DVC stages: each reads `params.yaml`, calls the library and writes its declared outputs.

A run is an experiment `<exp>` or a point of the K study, `k_study/k<K>`. Paths (relative to
the repository root, where `dvc repro` runs the stages):
    data/prepared/                  prepare
    resolved/<run>/<stage>.json     resolve    (the settings each stage of a run reads)
    models/<run>/model.keras        train      (checkpoints/<run>/ while it runs; dvclive/<run>/)
    metrics/<run>.json, plots/<run>/  evaluate (plots/<run>/log_likelihood.csv: log p(x) per test image)
    export/<exp>/<version>/         export     (experiments only)
    reports/{metrics,summary}.json, summary.md, plots/, overlays/  report   (every experiment)
    reports/k_study.{json,csv,png}             k_study  (every K)
    results.md, reports/{bound,samples}.png    study    (a study's table, studies/<name>/)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from vae_tf.config import load_params
from vae_tf.data import load_prepared, prepare as prepare_data, save_prepared
from vae_tf.errors import ParamsError
from vae_tf.files import atomic_write, json_text, staged_directory

PREPARED = Path("data/prepared")
RESOLVED = Path("resolved")
# The settings of a run each stage reads: sections, or keys as section.key.
STAGE_SETTINGS = {"train": ("seed", "model", "objective", "training"),
                  "evaluate": ("seed", "training.jit_compile", "evaluation"),
                  "export": ("evaluation.proposal_samples", "evaluation.proposal_scale", "export")}


def model_path(name: str) -> Path:
    return Path("models") / name / "model.keras"


def prepare(params_path: str = "params.yaml", pipeline: str = "dvc.yaml") -> None:
    """Refuses a file source (`npz:`, `idx:`) outside the prepare stage's dependencies in
    `pipeline` (DVC would not see it change)."""
    params = load_params(params_path)
    kind, _, path = params.data.source.partition(":")
    if kind in ("npz", "idx"):
        deps = _stage_dependencies(Path(pipeline), "prepare")
        if not any(Path(path).resolve().is_relative_to(Path(dep).resolve()) for dep in deps):
            raise ParamsError(f"data.source: {path} is outside the prepare stage's dependencies in {pipeline} "
                              f"({', '.join(deps)}), so replacing it would not rerun the stage; move it into one "
                              "of them (data/raw/) or add it to the stage's deps")
    save_prepared(prepare_data(params.data, params.seed), PREPARED)


def _stage_dependencies(pipeline: Path, stage: str) -> list[str]:
    """The `deps` of `stage` in the DVC pipeline file `pipeline`."""
    from ruamel.yaml import YAML

    try:
        return [str(dep) for dep in YAML(typ="safe").load(pipeline.read_text())["stages"][stage]["deps"]]
    except (OSError, KeyError, TypeError) as err:
        raise ParamsError(f"{pipeline}: cannot read the deps of stage {stage!r} ({err})") from None


def resolve(params_path: str = "params.yaml") -> None:
    """For every run and stage, the settings that stage reads (the run's experiment merged onto
    the base) as `resolved/<run>/<stage>.json`. DVC tracks these files rather than sections of
    params.yaml, so an edit reruns exactly the stages whose settings it changes: a base section
    an experiment overrides is not a dependency of that experiment."""
    params = load_params(params_path)
    with staged_directory(RESOLVED) as staging:
        for name in params.runs():
            settings = params.run(name).model_dump(mode="json")
            for stage, keys in STAGE_SETTINGS.items():
                read: dict = {}
                for key in keys:
                    section, _, field = key.partition(".")
                    value = settings[section][field] if field else settings[section]
                    read[section] = {**read.get(section, {}), field: value} if field else value
                path = staging / name / f"{stage}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(read, indent=2) + "\n")


def _load_model(name: str):
    import keras

    import vae_tf.models  # noqa: F401  (registers every part's serializable classes)
    from vae_tf.errors import DataError

    path = model_path(name)
    if not path.exists():
        raise DataError(f"{path}: no trained model; run `dvc repro train@{name}` first")
    return keras.models.load_model(path)


def train(name: str, params_path: str = "params.yaml") -> None:
    from vae_tf.training import train as fit

    params = load_params(params_path).run(name)
    fit(params, load_prepared(PREPARED), model_path(name), Path("dvclive") / name, Path("checkpoints") / name)


def evaluate(name: str, params_path: str = "params.yaml") -> None:
    from vae_tf.evaluation import evaluate_model
    from vae_tf.models import uses_xla

    params = load_params(params_path).run(name)
    e = params.evaluation
    data = load_prepared(PREPARED)
    model = _load_model(name)
    metrics_path, start = Path("metrics") / f"{name}.json", time.perf_counter()

    def write_metrics(result: dict) -> None:
        text = json_text({"run": name, **result["metrics"], "seconds": time.perf_counter() - start}, str(metrics_path))
        atomic_write(metrics_path, lambda tmp: tmp.write_text(text))

    def write_estimates(result: dict) -> None:
        """The estimates and the plots, before the diagnostics that follow them (the ELBO surgery)."""
        write_metrics(result)
        write_plots(name, model, data, result, params)
        print(f"wrote {metrics_path} and plots/{name}/ (the estimates); the ELBO surgery next", flush=True)

    write_metrics(evaluate_model(model, data.test, e, params.seed, jit_compile=uses_xla(params),
                                 finished=write_estimates))


def write_plots(name: str, model, data, result: dict, params) -> None:
    """plots/<run>/: reconstructions and samples (PNG), the latent codes where L = 2, KL and
    activity per latent dimension, and log p(x) per test image (CSV)."""
    import tensorflow as tf

    from vae_tf.plots import image_grid

    e = params.evaluation
    with staged_directory(Path("plots") / name) as staging:
        n = min(e.num_plot_images, len(data.test))
        half = (n + 1) // 2
        vmax = float(data.meta.n_levels - 1) if data.meta.representation == "levels" else 1.0
        x, reconstruction = data.test[:n], model(data.test[:n]).numpy()
        image_grid([x[:half], reconstruction[:half], x[half:], reconstruction[half:]], data.meta.image_shape,
                   staging / "reconstructions.png", f"{name}: test images and reconstructions (mean of p(x|z=E[z|x]))",
                   ["data", "recon.", "data", "recon."], vmax)
        prior_z = model.prior_distribution().sample(n, seed=[params.seed, 1])
        h = model.likelihood.network_input(tf.constant(data.test[:n]))
        posterior_z = model.posterior.sample(h, 1, tf.constant([params.seed, 2]))[0]
        prior_x, posterior_x = (model.likelihood.distribution(z).mean().numpy() for z in (prior_z, posterior_z))
        image_grid([prior_x[:half], prior_x[half:], posterior_x[:half], posterior_x[half:]], data.meta.image_shape,
                   staging / "samples.png", f"{name}: mean of p(x|z), z ~ p(z) (the prior) and z ~ q(z|x) "
                   "(the aggregated posterior, x a test image)", ["p(z)", "p(z)", "q(z)", "q(z)"], vmax)
        if model.latent_dim == 2:
            codes, _ = model.posterior_moments(data.test, tf.constant([params.seed, 4]))
            plot_latent_codes(model, codes.numpy(), data.test_labels, staging / "latent_codes.png",
                              f"{name}: the prior's density and E[z|x] of each test image")
        rows = ["dimension,kl,posterior_mean_variance"]
        rows += [f"{j},{kl:.6g},{var:.6g}" for j, (kl, var) in enumerate(zip(result["kl_per_dim"], result["activity"]))]
        (staging / "latent_dimensions.csv").write_text("\n".join(rows) + "\n")
        write_log_likelihoods(staging / "log_likelihood.csv", result["log_likelihood"], result["ais_log_likelihood"])


def write_log_likelihoods(path: Path, importance: np.ndarray, annealed) -> None:
    """log p(x) of each test image by importance sampling and, for the images AIS ran on, by AIS
    (blank past them): what paired comparisons of two runs on the same images need."""
    annealed = [] if annealed is None else annealed
    rows = ["image,importance_sampling,ais"]
    rows += [f"{i},{value:.6f},{annealed[i]:.6f}" if i < len(annealed) else f"{i},{value:.6f},"
             for i, value in enumerate(importance)]
    path.write_text("\n".join(rows) + "\n")


def plot_latent_codes(model, codes: np.ndarray, labels, path: Path, title: str) -> None:
    """`vae_tf.plots.latent_codes` over a grid that holds the codes and most of the prior."""
    from vae_tf.plots import latent_codes

    draws = model.prior_distribution().sample(2000, seed=[0, 5]).numpy()
    low = np.minimum(np.percentile(draws, 0.5, axis=0), codes.min(axis=0))
    high = np.maximum(np.percentile(draws, 99.5, axis=0), codes.max(axis=0))
    xs, ys = (np.linspace(lo, hi, 200, dtype=np.float32) for lo, hi in zip(low, high))
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    log_density = model.prior_distribution().log_prob(grid).numpy().reshape(len(ys), len(xs))
    latent_codes(codes, labels, (xs, ys, log_density), path, title)


def export(name: str, params_path: str = "params.yaml") -> None:
    from vae_tf.export import export_model

    params = load_params(params_path).experiment(name)
    model = _load_model(name)
    with staged_directory(Path("export") / name) as staging:
        e = params.evaluation
        export_model(model, staging / str(params.export.version), params.export.chunk_size, e.proposal_samples,
                     e.proposal_scale)


def _run_files(name: str) -> dict[str, Path]:
    """Where run `name`'s training curves (dvclive) and latent dimensions (evaluate) are."""
    return {"curves": Path("dvclive") / name / "plots" / "metrics",
            "latent_csv": Path("plots") / name / "latent_dimensions.csv"}


def _run_summary(name: str) -> dict:
    """Test metrics (evaluate) and training summary (train) of run `name`, as written."""
    from vae_tf.errors import DataError

    paths = {"test": Path("metrics") / f"{name}.json", "training": Path("dvclive") / name / "metrics.json"}
    missing = [str(path) for path in paths.values() if not path.exists()]
    if missing:
        raise DataError(f"{', '.join(missing)}: missing; run `dvc repro` (train and evaluate {name}) first")
    return {part: json.loads(path.read_text()) for part, path in paths.items()}


def report(params_path: str = "params.yaml") -> None:
    from vae_tf.report import comparison

    params = load_params(params_path)
    runs = {name: {**_run_summary(name), **_run_files(name), "params": params.experiment(name)}
            for name in params.experiments}
    summary, headline, table = comparison(runs, Path("reports") / "plots", Path("reports") / "overlays")
    texts = {"summary.json": json_text(summary, "reports/summary.json"),
             "metrics.json": json_text(headline, "reports/metrics.json"), "summary.md": table}
    for name, text in texts.items():
        atomic_write(Path("reports") / name, lambda tmp, text=text: tmp.write_text(text))


def k_study(params_path: str = "params.yaml") -> None:
    from vae_tf.errors import ParamsError
    from vae_tf.report import k_study as study

    params = load_params(params_path)
    if params.k_study is None:
        raise ParamsError("k_study: not set in params.yaml")
    settings = params.k_study
    runs = {k: _run_summary(f"k_study/k{k}") for k in settings.num_samples}
    runs[settings.value_of(params.experiment(settings.experiment))] = _run_summary(settings.experiment)  # its run
    study(settings.experiment, runs, Path("reports"), settings.sweep)


def study(params_path: str = "params.yaml", published_path: str = "published.yaml") -> None:
    """A study's table (`results.md`, every experiment evaluated so far beside its published
    figure) and figures (`reports/`)."""
    from ruamel.yaml import YAML

    from vae_tf.study import figures, table

    params = load_params(params_path)
    runs = {}
    for name in params.experiments:
        run = {"params": params.experiment(name), **_run_files(name), "samples": Path("plots") / name / "samples.png",
               "log_likelihoods": Path("plots") / name / "log_likelihood.csv"}
        if (Path("metrics") / f"{name}.json").exists():
            run.update(_run_summary(name))
        runs[name] = run
    published = YAML(typ="safe").load(Path(published_path).read_text()) or {}
    # a study is a DVC project of its own: run from its folder, named from the repository's root
    root = next((folder for folder in Path.cwd().parents if (folder / ".git").exists()), None)
    text = table(runs, published, f"cd {Path.cwd().relative_to(root)} && dvc repro" if root else "dvc repro")
    with staged_directory(Path("reports")) as staging:
        figures(runs, staging)
    atomic_write(Path("results.md"), lambda tmp: tmp.write_text(text))
