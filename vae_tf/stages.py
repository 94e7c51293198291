"""The DVC stages: paths from their command line in dvc.yaml, settings from what DVC tracks.

Each stage takes its input and output paths from its `cmd` (`vae_tf.cli.run_stage`).

A run is an experiment `<exp>` or a point of the K study, `k_study/k<K>`. prepare and resolve read
`params.yaml` (their `params` in dvc.yaml); train, evaluate and export read only their run's
`resolved/<run>/<stage>.json` (`vae_tf.config.declared`); report, k_study and a study's table read
`resolved/` and the runs' outputs. Inside an output folder the layout is the stage's own:
    <model>/model.keras                   train (its checkpoints folder while it runs)
    <plots>/log_likelihood.csv, ...       evaluate (log p(x) per test image)
    <export>/<version>/                   export
    <live>/metrics.json, plots/           dvclive (train)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from vae_tf.config import load_params
from vae_tf.config.declared import STAGE_SETTINGS, declared, load_declared
from vae_tf.data import load_meta, load_prepared, prepare as prepare_data, save_prepared
from vae_tf.errors import ParamsError
from vae_tf.files import atomic_write, json_text, staged_directory

EXPERIMENTS = "experiments.json"  # in the resolved folder: the experiments' names, in params.yaml's order


def model_file(model: str | Path) -> Path:
    return Path(model) / "model.keras"


def prepare(prepared: str, params_path: str = "params.yaml", pipeline: str = "dvc.yaml") -> None:
    """params.yaml's `data` and `seed` -> the folder `prepared`. Refuses a file source (`npz`,
    `idx`) whose `data.path` is outside the prepare stage's dependencies in `pipeline` (DVC would
    not see it change; the shipped dvc.yaml files depend on `${data.path}`, so it never is)."""
    params = load_params(params_path)
    if params.data.source in ("npz", "idx"):
        path, deps = params.data.path, _stage_dependencies(Path(pipeline), "prepare", Path(params_path))
        if not any(Path(path).resolve().is_relative_to(Path(dep).resolve()) for dep in deps):
            raise ParamsError(f"data.path: {path} is outside the prepare stage's dependencies in {pipeline} "
                              f"({', '.join(deps)}), so replacing it would not rerun the stage; list "
                              "${data.path} in the stage's deps")
    save_prepared(prepare_data(params.data, params.seed), Path(prepared))


def _stage_dependencies(pipeline: Path, stage: str, params_path: Path) -> list[str]:
    """The `deps` of `stage` in the DVC pipeline file `pipeline`, with DVC's `${a.b}` references
    to params.yaml's values filled in (as DVC resolves them)."""
    import re

    from ruamel.yaml import YAML

    def value(match: re.Match) -> str:
        found = variables
        for key in match[1].split("."):
            found = found[key]
        return str(found)

    try:
        variables = YAML(typ="safe").load(params_path.read_text())
        return [re.sub(r"\$\{\s*([\w.]+)\s*\}", value, str(dep))
                for dep in YAML(typ="safe").load(pipeline.read_text())["stages"][stage]["deps"]]
    except (OSError, KeyError, TypeError) as err:
        raise ParamsError(f"{pipeline}: cannot read the deps of stage {stage!r} ({err})") from None


def resolve(prepared: str, resolved: str, params_path: str = "params.yaml") -> None:
    """For every run and stage, the settings that stage reads (the run's experiment merged onto
    the base, `STAGE_SETTINGS`) as `<resolved>/<run>/<stage>.json`, and the experiments' names as
    `<resolved>/experiments.json`. DVC tracks these files rather than sections of params.yaml, so
    an edit reruns exactly the stages whose settings it changes: a base section an experiment
    overrides is not a dependency of that experiment. Every run is first checked against the
    `prepared` data's description and this machine's memory (`vae_tf.preflight`): what train or
    evaluate would refuse is refused here, before DVC deletes the outputs of an earlier run."""
    from vae_tf.cli import import_tensorflow
    from vae_tf.preflight import machine_memory, refuse_what_cannot_run

    params, meta, memory = load_params(params_path), load_meta(Path(prepared)), machine_memory()
    runs = {name: params.run(name) for name in params.runs()}
    import_tensorflow()  # once params are known valid: a bad key is refused in a second
    for name, run in runs.items():
        try:
            refuse_what_cannot_run(run, meta, memory)
        except ParamsError as err:
            where = f"experiments.{name}" if name in params.experiments else name
            raise ParamsError(f"{where}: {err}") from None
    with staged_directory(Path(resolved)) as staging:
        (staging / EXPERIMENTS).write_text(json.dumps(list(params.experiments)) + "\n")
        for name, run in runs.items():
            settings = run.model_dump(mode="json")
            (staging / name).mkdir(parents=True)
            for stage, keys in STAGE_SETTINGS.items():
                (staging / name / f"{stage}.json").write_text(json.dumps(declared(settings, keys), indent=2) + "\n")


def _load_model(model: str):
    import keras

    import vae_tf.models  # noqa: F401  (registers every part's serializable classes)
    from vae_tf.errors import DataError

    path = model_file(model)
    if not path.exists():
        raise DataError(f"{path}: no trained model; `dvc repro` runs the train stage that writes it")
    return keras.models.load_model(path)


def train(settings: str, prepared: str, model: str, live: str, checkpoints: str) -> None:
    """The run's `train.json` settings and the `prepared` data -> the trained `model` folder and
    dvclive's `live` folder, resuming from `checkpoints` (kept only while the run is unfinished)."""
    from vae_tf.training import train as fit

    params = load_declared(settings, "train")
    fit(params, load_prepared(Path(prepared)), model_file(model), Path(live), Path(checkpoints))


def evaluate(run: str, settings: str, prepared: str, model: str, metrics: str, plots: str) -> None:
    """Run `run`'s `evaluate.json` settings, its `model` and the `prepared` test images -> its
    `metrics` file (every figure, each estimator named) and `plots` folder."""
    from vae_tf.evaluation import evaluate_model
    from vae_tf.models import uses_xla

    params = load_declared(settings, "evaluate")
    data = load_prepared(Path(prepared))
    trained = _load_model(model)
    metrics_path, start = Path(metrics), time.perf_counter()

    def write_metrics(result: dict) -> None:
        text = json_text({"run": run, **result["metrics"], "seconds": time.perf_counter() - start}, str(metrics_path))
        atomic_write(metrics_path, lambda tmp: tmp.write_text(text))

    def write_estimates(result: dict) -> None:
        """The estimates and the plots, before the diagnostics that follow them (the ELBO surgery)."""
        write_metrics(result)
        write_plots(run, trained, data, result, params, Path(plots))
        print(f"wrote {metrics_path} and {plots}/ (the estimates); the ELBO surgery next", flush=True)

    write_metrics(evaluate_model(trained, data.test, params.evaluation, params.seed, jit_compile=uses_xla(params),
                                 finished=write_estimates))


def write_plots(name: str, model, data, result: dict, params, folder: Path) -> None:
    """The plots `folder` of run `name`: reconstructions and samples (PNG), the latent codes where L = 2, KL and
    activity per latent dimension, and log p(x) per test image (CSV)."""
    import tensorflow as tf

    from vae_tf.plots import image_grid

    e = params.evaluation
    with staged_directory(folder) as staging:
        n = min(e.num_plot_images, len(data.test))
        half = (n + 1) // 2
        vmax = float(data.meta.n_levels - 1) if data.meta.representation == "levels" else 1.0
        x, reconstruction = data.test[:n], model(data.test[:n]).numpy()
        image_grid([x[:half], reconstruction[:half], x[half:], reconstruction[half:]], data.meta.image_shape,
                   staging / "reconstructions.png", f"{name}: test images and reconstructions (mean of p(x|z=E[z|x]))",
                   ["data", "recon.", "data", "recon."], vmax)
        prior_z = model.prior_distribution().sample(n, seed=[params.seed, 1])
        h = model.likelihood.network_input(tf.constant(data.test[:n]))
        posterior_z = model.posterior.draw(h, 1, tf.constant([params.seed, 2])).z[0]
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


def export(settings: str, model: str, exported: str) -> None:
    """The run's `export.json` settings and its `model` -> the SavedModel folder
    `<exported>/<export.version>/` (the folder replaced whole)."""
    from vae_tf.export import export_model

    params = load_declared(settings, "export")
    trained = _load_model(model)
    with staged_directory(Path(exported)) as staging:
        e = params.evaluation
        export_model(trained, staging / str(params.export.version), params.export.chunk_size, e.proposal_samples,
                     e.proposal_scale)


@dataclass(frozen=True)
class RunOutputs:
    """Where the runs' stages wrote: `<metrics>/<run>.json` (evaluate), `<live>/<run>/` (dvclive,
    train) and `<plots>/<run>/` (evaluate)."""

    metrics: Path
    live: Path
    plots: Optional[Path] = None  # what `files` reads; `summary` needs only the other two

    def files(self, name: str) -> dict[str, Path]:
        """Run `name`'s training curves, latent dimensions, samples and log p(x) per test image."""
        plots = self.plots / name
        return {"curves": self.live / name / "plots" / "metrics", "latent_csv": plots / "latent_dimensions.csv",
                "samples": plots / "samples.png", "log_likelihoods": plots / "log_likelihood.csv"}

    def summary(self, name: str, required: bool = True) -> dict:
        """Run `name`'s test metrics (`test`) and training summary (`training`), as written; {} if
        not evaluated yet and not `required`."""
        from vae_tf.errors import DataError

        paths = {"test": self.metrics / f"{name}.json", "training": self.live / name / "metrics.json"}
        if not required and not paths["test"].exists():
            return {}
        missing = [str(path) for path in paths.values() if not path.exists()]
        if missing:
            raise DataError(f"{', '.join(missing)}: missing; run `dvc repro` (train and evaluate {name}) first")
        return {part: json.loads(path.read_text()) for part, path in paths.items()}


def _experiments(resolved: Path) -> dict[str, object]:
    """Each experiment's settings as report and a study's table read them (its `report.json`),
    in params.yaml's order."""
    names = json.loads((resolved / EXPERIMENTS).read_text())
    return {name: load_declared(resolved / name / "report.json", "report") for name in names}


def report(resolved: str, metrics: str, live: str, plots: str, reports: str) -> None:
    """Every experiment's figures side by side: `<reports>/summary.{json,md}`, the headline
    `<reports>/metrics.json`, `<reports>/plots/` and the overlays `dvc plots` draws."""
    from vae_tf.report import comparison

    outputs, reports = RunOutputs(Path(metrics), Path(live), Path(plots)), Path(reports)
    runs = {name: {**outputs.summary(name), **outputs.files(name), "params": params}
            for name, params in _experiments(Path(resolved)).items()}
    summary, headline, table = comparison(runs, reports / "plots", reports / "overlays")
    texts = {"summary.json": json_text(summary, str(reports / "summary.json")),
             "metrics.json": json_text(headline, str(reports / "metrics.json")), "summary.md": table}
    for name, text in texts.items():
        atomic_write(reports / name, lambda tmp, text=text: tmp.write_text(text))


def k_study(resolved: str, metrics: str, live: str, reports: str, params_path: str = "params.yaml") -> None:
    """params.yaml's `k_study` and its runs -> `<reports>/k_study.{json,csv,png}`, the
    experiment's own run the point at its own value (from its `train.json`)."""
    from vae_tf.report import k_study as study

    settings = load_params(params_path).k_study
    if settings is None:
        raise ParamsError(f"k_study: not set in {params_path}")
    outputs = RunOutputs(Path(metrics), Path(live))
    runs = {k: outputs.summary(f"k_study/k{k}") for k in settings.num_samples}
    own = settings.value_of(load_declared(Path(resolved) / settings.experiment / "train.json", "train"))
    runs[own] = outputs.summary(settings.experiment)
    study(settings.experiment, runs, Path(reports), settings.sweep)


def study(resolved: str, metrics: str, live: str, plots: str, published: str, reports: str, results: str,
          kept: str, per_image: str) -> None:
    """A study's table (`results`, every experiment evaluated so far beside its `published`
    figure), its rows as numbers (`kept`, results.json: read first, so that rows measured in an
    earlier workspace with the same settings stay in the table), each row's log p(x) per test image
    (`per_image/<run>.csv`, kept beside them, so that a run is paired with a reference evaluated in
    an earlier workspace) and figures (`reports`: the bound against epochs and seconds, samples of
    every model evaluated here)."""
    import hashlib

    from ruamel.yaml import YAML

    from vae_tf.errors import DataError
    from vae_tf.study import digest, figures, measured_alike, per_image_text, rows, table

    outputs = RunOutputs(Path(metrics), Path(live), Path(plots))
    experiments = _experiments(Path(resolved))
    runs = {name: {"params": params, **outputs.files(name), **outputs.summary(name, required=False)}
            for name, params in experiments.items()}
    fingerprints = {name: {"params": hashlib.sha256(b"".join((Path(resolved) / name / f"{stage}.json").read_bytes()
                                                            for stage in ("train", "evaluate"))).hexdigest()[:16],
                           "data": digest(params.data.model_dump(mode="json"))}
                    for name, params in experiments.items()}
    try:
        archive = json.loads(Path(kept).read_text()) if Path(kept).exists() else {}
    except json.JSONDecodeError as error:
        raise DataError(f"{kept}: not JSON ({error}); `git checkout {kept}` restores the kept rows") from None
    for name, run in runs.items():  # a kept row's per-image figures stand in for outputs not here
        carried = Path(per_image) / f"{name}.csv"
        if "test" not in run and carried.exists() and measured_alike(archive.get(name), fingerprints[name]):
            run["log_likelihoods"] = carried
    found = rows(runs, fingerprints, archive)
    papers = YAML(typ="safe").load(Path(published).read_text()) or {}
    # a study is a DVC project of its own: run from its folder, named from the repository's root
    root = next((folder for folder in Path.cwd().parents if (folder / ".git").exists()), None)
    text = table(runs, found, papers, f"cd {Path.cwd().relative_to(root)} && dvc repro" if root else "dvc repro")
    with staged_directory(Path(reports)) as staging:
        figures(runs, staging)
    kept_text = json_text({name: r for name, r in found.items() if r is not None}, kept)
    Path(per_image).mkdir(parents=True, exist_ok=True)
    for name, run in runs.items():
        if "test" in run:
            csv_text = per_image_text(run["log_likelihoods"])
            atomic_write(Path(per_image) / f"{name}.csv", lambda tmp: tmp.write_text(csv_text))
    atomic_write(Path(kept), lambda tmp: tmp.write_text(kept_text))
    atomic_write(Path(results), lambda tmp: tmp.write_text(text))
