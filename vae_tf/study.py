"""A study's table and figures: every run's test figures beside the published ones.

Reads what train (dvclive) and evaluate (metrics) wrote, like `vae_tf.report`, and a mapping of
published figures (run -> {nll, where, data, budget}); runs not evaluated yet are listed as such,
so the table can be written while a long study is still running. Each row is also kept as numbers
(results.json, in git): a study outlives the workspace that trained its models, so a row measured
earlier with the same settings on the same data stays in the table, marked as kept, until its run
is evaluated again.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vae_tf.config import Params  # noqa: E402
from vae_tf.provenance import provenance  # noqa: E402
from vae_tf.report import nll_text, read_curve, run_row  # noqa: E402


def setting(params) -> str:
    """The model's networks and parts in a few words: `200-200 tanh, L=50, gaussian q, standard_normal p`
    (`300-300 gated, ...` for gated dense layers); with stochastic layers above z1, each one's too:
    `300-300 gated, L=40 + 300-300 L=40 (gaussian q), ...`."""
    m = params.model
    layers = "gated" if m.network.gated else m.activation
    above = "".join(f" + {'-'.join(map(str, layer.hidden_units))} L={layer.latent_dim} ({layer.posterior.kind} q)"
                    for layer in m.upper_layers)
    return (f"{'-'.join(map(str, m.hidden_units))} {layers}, L={m.latent_dim}{above}, {m.posterior.kind} q, "
            f"{m.prior.kind} p")


def trained_with(params, plain: bool = False) -> dict:
    """All a run trained with but its seed, as JSON: data, networks, parts, objective and training.
    `plain`: with its parts made the plain VAE's (the defaults: one stochastic layer, a Gaussian q,
    a standard normal p, the ELBO without refinement), its KL warm-up kept (the protocol's, not a
    part's): a model of several layers is paired with the one-layer VAE."""
    settings = {section: getattr(params, section).model_dump(mode="json")
                for section in ("data", "model", "objective", "training")}
    if plain:
        defaults = Params()
        settings["model"].update(posterior=defaults.model.posterior.model_dump(mode="json"),
                                 prior=defaults.model.prior.model_dump(mode="json"))
        settings["model"].pop("upper_layers", None)  # dumped only where there are some
        warmup = getattr(params.objective, "kl_warmup_epochs", 0)
        settings["objective"] = {**defaults.objective.model_dump(mode="json"), "kl_warmup_epochs": warmup}
    return settings


def reference(name: str, runs: dict[str, dict]) -> str | None:
    """The plain VAE of run `name`'s setting: the first run with its seed whose settings are its
    own with the parts made plain (`trained_with`): the same data, networks and training budget."""
    params = runs[name]["params"]
    plain = trained_with(params, plain=True)
    return next((other for other, run in runs.items()
                 if run["params"].seed == params.seed and trained_with(run["params"]) == plain), None)


def versus_reference(name: str, runs: dict[str, dict]) -> tuple[str, list[float] | None]:
    """Run `name`'s reference (`reference`) and NLL(run) - NLL(reference) with its standard error,
    paired over the test images; None where the run is its own reference, is not evaluated here, or
    its reference has no per-image figures (neither evaluated here nor kept in `per_image/`)."""
    baseline = reference(name, runs)
    if baseline in (None, name) or "test" not in runs[name] or not Path(runs[baseline]["log_likelihoods"]).exists():
        return baseline, None
    return baseline, paired_difference(runs[name]["log_likelihoods"], runs[baseline]["log_likelihoods"])


def per_image(path: Path, estimator: str = "importance_sampling") -> np.ndarray:
    """log p(x) of each test image by `estimator` (`plots/<run>/log_likelihood.csv`; NaN where
    it was not run)."""
    with open(path) as f:
        return np.array([float(row[estimator] or "nan") for row in csv.DictReader(f)])


def per_image_text(path: Path) -> str:
    """The importance-sampling column of a run's `log_likelihood.csv`, as a study keeps it in git
    (`per_image/<run>.csv`, to 1e-4 nat: about 150 kB for 10,000 test images)."""
    values = per_image(path)
    return "image,importance_sampling\n" + "".join(f"{i},{value:.4f}\n" for i, value in enumerate(values))


def mean_and_stderr(values: np.ndarray) -> list[float]:
    return [float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))]


def paired_difference(run: Path, baseline: Path) -> list[float]:
    """NLL(run) - NLL(baseline) over the same test images and its standard error, from the
    per-image log p(x) by importance sampling."""
    return mean_and_stderr(per_image(baseline) - per_image(run))


def ais_above_is(run: Path) -> list[float] | None:
    """AIS's NLL minus IS's on the images AIS ran on, paired, and its standard error (None
    without AIS)."""
    annealed, importance = per_image(run, "ais"), per_image(run)
    done = ~np.isnan(annealed)
    return mean_and_stderr(importance[done] - annealed[done]) if done.sum() > 1 else None


FIGURES = ("nll", "nll_stderr", "ais_nll", "ais_nll_stderr", "elbo", "active_units", "latent_dim", "kl_aggregate",
           "epochs_run", "best_epoch", "stopped_by", "posterior_collapse",
           "seconds_per_epoch")  # a row's figures, from `run_row`
AIS_ABOVE_IS = 1.0  # nats: an AIS NLL further above IS's did not converge (AIS bounds log p(x) from below)


def converged(params) -> bool:
    """Whether a run trains until early stopping (its patience shorter than its epoch cap), rather
    than for a fixed budget (the short-budget view)."""
    return params.training.early_stopping_patience < params.training.epochs


def ais_text(r: dict) -> str:
    """The AIS column: the figure, or where it lies more than `AIS_ABOVE_IS` above IS (an upper
    bound on the NLL that failed to converge) the flag with the figures that say so: the paired
    difference on the images AIS ran on (`ais_above_is`), or for a row kept from before it was
    measured, the difference of the means (over AIS's images and over all)."""
    if r["ais_nll"] is None:
        return "–"
    above = r.get("ais_above_is") or [r["ais_nll"] - r["nll"], None]
    if above[0] > AIS_ABOVE_IS:
        paired = "" if above[1] is None else f" ± {above[1]:.2f} on its images"
        return f"not converged: {r['ais_nll']:.2f}, {above[0]:.2f}{paired} above IS"
    return nll_text(r["ais_nll"], r["ais_nll_stderr"])


def digest(value) -> str:
    """A short hash of JSON `value`."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def seeds_group(params) -> str:
    """What runs share when they differ only in their seed (`trained_with`), as a short hash."""
    return digest(trained_with(params))


def measured_alike(kept: dict | None, fingerprint: dict) -> bool:
    """Whether a row kept from an earlier workspace was measured as the run would be now: every
    field of `fingerprint` (`params`: the run's resolved settings; `data`: the data section of
    params.yaml, so that pointing the study at another data set keeps no row of the old one) the same."""
    return kept is not None and all(kept.get(key) == value for key, value in fingerprint.items())


def row(name: str, runs: dict[str, dict], fingerprint: dict) -> dict | None:
    """Run `name`'s row as numbers, from the outputs its stages wrote (None if not evaluated yet),
    stamped with `fingerprint` (`measured_alike`) and today's date."""
    run = runs[name]
    if "test" not in run:
        return None
    figures, test = run_row(name, run), run["test"]
    baseline, difference = versus_reference(name, runs)
    return {**fingerprint, "evaluated": datetime.date.today().isoformat(),
            **{key: figures[key] for key in FIGURES}, "reference": baseline, "versus": difference,
            "ais_above_is": ais_above_is(run["log_likelihoods"]),
            "estimators": {"num_samples": test["num_samples"], "num_examples": test["num_examples"],
                           "ais": (test.get("ais") or {}).get("estimator", "not run"),
                           "surgery": test["elbo_surgery"]["estimator"]}}


def rows(runs: dict[str, dict], fingerprints: dict[str, dict], archive: dict[str, dict]) -> dict[str, dict | None]:
    """Every run's row: from its outputs here where it is evaluated; else from `archive` (the rows
    an earlier table kept, results.json) where that row was measured alike (`fingerprints`,
    `measured_alike`); else None. A study spans sessions: its models and per-image figures live in
    a workspace, its rows in git."""
    here = {name: row(name, runs, fingerprints[name]) for name in runs}
    return {name: here[name] or (archive[name] if measured_alike(archive.get(name), fingerprints[name]) else None)
            for name in runs}


# The two views of a study, by `converged`: the table's title and the bound's figure.
VIEWS = {True: ("Trained until early stopping (the papers' protocol): the verdicts.", "bound.png"),
         False: ("The short budget (a fixed number of epochs): a view, not a verdict.", "bound_short_budget.png")}


def table(runs: dict[str, dict], found: dict[str, dict | None], published: dict[str, dict], command: str) -> str:
    """The study as Markdown: the runs trained until early stopping, then the short-budget runs
    (`converged`), one row per run (`runs[name]`: its `params`, and `test` once evaluated here;
    `found[name]`: its `row`, here or kept from an earlier table), with its NLL against the plain
    VAE of its setting paired over the test images; the published figures apart, with their data."""
    data = next(iter(runs.values()))["params"].data
    lines = [f"{provenance(command)} Data: `{data.name}`, {data.preprocessing}."]
    for to_convergence, (title, _) in VIEWS.items():
        names = [name for name, run in runs.items() if converged(run["params"]) == to_convergence]
        if names:
            lines += ["", title, "", *runs_table({name: runs[name] for name in names}, found)]
    measured = [r for r in found.values() if r is not None]
    if measured:
        estimators = measured[0]["estimators"]
        lines += ["", f"NLL in nats per test image ± one standard error over images: IS with K = "
                      f"{estimators['num_samples']} over all {estimators['num_examples']} test images; AIS: "
                      f"{estimators['ais']}; an AIS figure more than {AIS_ABOVE_IS:g} nat above IS's is flagged, "
                      "not given as a result (AIS bounds log p(x) from below: it did not converge), IS's taken "
                      "on the same images (for a row kept from before that was measured: the difference of the "
                      "means over AIS's images and over all). Epochs run, "
                      "the best epoch (whose weights are kept) and what stopped training: patience (no better "
                      "validation bound in the patience) or the cap on epochs. vs the VAE of its setting: NLL minus "
                      "that of the run with the same data, networks, training and seed, a Gaussian q, a "
                      "standard normal p and the ELBO, paired over the test images (IS), ± its standard error "
                      "(– where the two were not both "
                      "evaluated in one workspace). -ELBO of the IS proposal; gap = "
                      "log p(x) - ELBO (IS). KL(q(z) || p(z)): the ELBO surgery's hole, "
                      f"{estimators['surgery']}. s / epoch: median wall time of an epoch, validation "
                      "included. (kept, date): a row measured with these same settings in an earlier workspace "
                      "and kept in results.json, its outputs not here, its difference against its reference "
                      "as evaluated then (`dvc repro evaluate@<run>` measures it again). A run marked posterior "
                      "collapse ended with no active unit or a validation KL about zero (its decoder ignores z)."]
    if published:
        lines += ["", "Published figures, on the data each names: a scale for the figures above, not a "
                      "comparison with them unless the data are the same.", ""]
        lines += [f"- {name}: {paper['nll']:.2f} ({paper['data']}); {paper['where']}; {paper['budget']}."
                  for name, paper in published.items()]
    return "\n".join(lines + seeds_table(runs, found)) + "\n"


def runs_table(runs: dict[str, dict], found: dict[str, dict | None]) -> list[str]:
    """One table's lines: a row per run of `runs`, its figures from `found`."""
    lines = ["| run | setting | objective | epochs run | best epoch | stopped by | NLL, IS | vs the VAE of its "
             "setting | -ELBO | gap | active units | NLL, AIS | KL(q(z) \\|\\| p(z)) | s / epoch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, run in runs.items():
        r = found[name]
        kept = "" if r is None or "test" in run else f" (kept, {r['evaluated']})"
        collapsed = ", posterior collapse" if r is not None and r.get("posterior_collapse") else ""
        described = f"| {name}{kept}{collapsed} | {setting(run['params'])} | {run['params'].objective.describe()} |"
        if r is None:
            lines.append(f"{described} not run yet | | | | | | | | | | |")
            continue
        versus = "(the reference)" if r["reference"] == name else \
            "–" if r["versus"] is None else f"{r['versus'][0]:+.2f} ± {r['versus'][1]:.2f} ({r['reference']})"
        lines.append(
            f"{described} {r['epochs_run']} | {r.get('best_epoch') or '–'} | {r.get('stopped_by') or '–'} | "
            f"{nll_text(r['nll'], r['nll_stderr'])} | {versus} | {-r['elbo']:.2f} | {-r['nll'] - r['elbo']:.2f} | "
            f"{r['active_units']} / {r['latent_dim']} | {ais_text(r)} | {r['kl_aggregate']:.2f} | "
            f"{r['seconds_per_epoch']:.2f} |")
    return lines


def seeds_table(runs: dict[str, dict], found: dict[str, dict | None]) -> list[str]:
    """The runs that differ only in their seed (`seeds_group`), once two or more of them have
    rows: their NLL's mean and standard deviation over seeds, and each seed's paired difference
    from the VAE of its setting and seed, with how many of those lie more than three standard
    errors below zero (the targets' test)."""
    groups: dict[str, list[str]] = {}
    for name, r in found.items():
        if r is not None:
            groups.setdefault(seeds_group(runs[name]["params"]), []).append(name)
    groups = {key: names for key, names in groups.items() if len(names) > 1}
    if not groups:
        return []
    lines = ["", "Seeds: the runs above that differ only in their seed.", "",
             "| runs | seeds | NLL, IS: mean ± sd over seeds | vs the VAE of its setting and seed, each seed "
             "| more than 3 se below | gap: mean ± sd | active units | s / epoch: mean |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for names in groups.values():
        group = [found[name] for name in names]
        nll, gap = (np.array([r["nll"] for r in group]), np.array([-r["nll"] - r["elbo"] for r in group]))
        differences = [r["versus"] for r in group]
        measured = [d for d in differences if d is not None]
        each = ", ".join("–" if d is None else f"{d[0]:+.2f} ± {d[1]:.2f}" for d in differences)
        below = f"{sum(delta < -3 * stderr for delta, stderr in measured)} of {len(measured)}" if measured else "–"
        lines.append(
            f"| {', '.join(names)} | {', '.join(str(runs[name]['params'].seed) for name in names)} | "
            f"{nll.mean():.2f} ± {nll.std(ddof=1):.2f} | {each} | {below} | {gap.mean():.2f} ± {gap.std(ddof=1):.2f} | "
            f"{', '.join(str(r['active_units']) for r in group)} | "
            f"{np.mean([r['seconds_per_epoch'] for r in group]):.2f} |")
    return lines


def figures(runs: dict[str, dict], directory: Path) -> list[str]:
    """`bound.png`: the validation bound of every run trained until early stopping against epochs
    and against training seconds (equal time), overlaid; `bound_short_budget.png`: the same for
    the short-budget runs; `samples.png`: each run's decoded prior draws (its
    `plots/<run>/samples.png`). Returns the runs left out of the bound's figures: those whose
    objective bounds no log-likelihood (the AAE's), named in its title."""
    done = {name: run for name, run in runs.items() if "test" in run}
    unbounded = [name for name, run in done.items() if not (run["curves"] / "eval" / "bound.tsv").exists()]
    for to_convergence, (_, filename) in VIEWS.items():
        group = {name: run for name, run in done.items() if converged(run["params"]) == to_convergence}
        if group:
            bound_figure(group, [name for name in unbounded if name in group], directory / filename)
    if done:
        fig, axes = plt.subplots(len(done), 1, figsize=(8, 1.6 * len(done)), squeeze=False)
        for ax, (name, run) in zip(axes[:, 0], done.items()):
            ax.imshow(plt.imread(run["samples"]))
            ax.set_axis_off()
            ax.set_title(name, fontsize=8)
        fig.savefig(directory / "samples.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    return unbounded


def bound_figure(runs: dict[str, dict], unbounded: list[str], path: Path) -> None:
    """The validation bound of `runs` against epochs and against training seconds, those of
    `unbounded` named in the title instead."""
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for name, run in runs.items():
        if name in unbounded:
            continue
        epochs, bound = read_curve(run["curves"] / "eval" / "bound.tsv")
        _, seconds = read_curve(run["curves"] / "train" / "epoch_seconds.tsv")
        elapsed = np.cumsum(seconds)
        by_epoch.plot([e + 1 for e in epochs], bound, label=name)
        by_time.plot(elapsed[:len(bound)], bound, label=name)
    by_epoch.set(xlabel="epoch", ylabel="validation bound (nats)", title="Validation bound against epochs")
    by_time.set(xlabel="training seconds", xscale="log", title="... and against training time")
    by_time.legend(fontsize=7, ncol=2)
    if unbounded:
        fig.suptitle(f"Not shown (no bound on log p(x) in training): {', '.join(unbounded)}", fontsize=8)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
