"""A study's table and figures: every run's test figures beside the published ones.

Reads what train (dvclive) and evaluate (metrics) wrote, like `vae_tf.report`, and a mapping of
published figures (run -> {nll, where, data, budget}); runs not evaluated yet are listed as such,
so the table can be written while a long study is still running.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vae_tf.provenance import provenance  # noqa: E402
from vae_tf.report import nll_text, read_curve, run_row  # noqa: E402


def setting(params) -> str:
    """The model's networks and parts in a few words: `200-200 tanh, L=50, gaussian q, standard_normal p`."""
    m = params.model
    return (f"{'-'.join(map(str, m.hidden_units))} {m.activation}, L={m.latent_dim}, {m.posterior.kind} q, "
            f"{m.prior.kind} p")


def reference(name: str, runs: dict[str, dict]) -> str | None:
    """The plain VAE of run `name`'s setting: the first run with the same networks and latent
    size, a Gaussian q, a standard normal p and the ELBO without refinement."""
    model = runs[name]["params"].model
    for other, run in runs.items():
        p = run["params"]
        if (p.model.hidden_units, p.model.latent_dim) == (model.hidden_units, model.latent_dim) and \
                (p.model.posterior.kind, p.model.prior.kind, p.objective.kind) == ("gaussian", "standard_normal", "elbo") \
                and p.objective.refinement is None:
            return other
    return None


def paired_difference(run: Path, baseline: Path) -> tuple[float, float]:
    """NLL(run) - NLL(baseline) over the same test images and its standard error, from the
    per-image log p(x) by importance sampling (`plots/<run>/log_likelihood.csv`)."""
    def read(path):
        with open(path) as f:
            return np.array([float(row["importance_sampling"]) for row in csv.DictReader(f)])

    difference = read(baseline) - read(run)
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def table(runs: dict[str, dict], published: dict[str, dict], command: str) -> str:
    """The study as Markdown: one row per run (`runs[name]`: its `params`, its `log_likelihoods`
    file and, once evaluated, its `test` metrics and `training` summary), with its NLL against
    the plain VAE of its setting (`reference`) paired over the test images, and the published
    figure beside it."""
    data = next(iter(runs.values()))["params"].data
    lines = [
        f"{provenance(command)} Data: `{data.source}`, "
        f"{data.preprocessing}.",
        "",
        "| run | setting | objective | NLL, IS | NLL, AIS | vs the VAE of its setting | -ELBO | gap | active units "
        "| KL(q(z) \\|\\| p(z)) | epochs | s / epoch | published NLL |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for name, run in runs.items():
        paper = published.get(name)
        cited = f"{paper['nll']:.2f} [{len(notes) + 1}]" if paper else ""
        if paper:
            notes.append(f"[{len(notes) + 1}] {paper['where']}; {paper['data']}; {paper['budget']}.")
        described = f"| {name} | {setting(run['params'])} | {run['params'].objective.describe()} |"
        if "test" not in run:
            lines.append(f"{described} not run yet | | | | | | | | | {cited} |")
            continue
        baseline = reference(name, runs)
        if baseline == name:
            versus = "(the reference)"
        elif baseline is None or "test" not in runs[baseline]:
            versus = "–"
        else:
            delta, stderr = paired_difference(run["log_likelihoods"], runs[baseline]["log_likelihoods"])
            versus = f"{delta:+.2f} ± {stderr:.2f} ({baseline})"
        r = run_row(name, run)
        lines.append(
            f"{described} {nll_text(r['nll'], r['nll_stderr'])} | {nll_text(r['ais_nll'], r['ais_nll_stderr'])} | "
            f"{versus} | {-r['elbo']:.2f} | {-r['nll'] - r['elbo']:.2f} | {r['active_units']} / {r['latent_dim']} | "
            f"{r['kl_aggregate']:.2f} | {r['epochs_run']} | {r['seconds_per_epoch']:.2f} | {cited} |")
    evaluated = [run for run in runs.values() if "test" in run]
    if evaluated:
        test = evaluated[0]["test"]
        lines += ["", f"NLL in nats per test image ± one standard error over images: IS with K = "
                      f"{test['num_samples']} over all {test['num_examples']} test images; AIS: "
                      f"{(test.get('ais') or {}).get('estimator', 'not run')}. vs the VAE of its setting: NLL minus "
                      "that of the run with the same networks, a Gaussian q, a standard normal p and the ELBO, "
                      "paired over the test images (IS), ± its standard error. -ELBO of the IS proposal; gap = "
                      "log p(x) - ELBO (IS). KL(q(z) || p(z)): the ELBO surgery's hole, "
                      f"{test['elbo_surgery']['estimator']}. s / epoch: median wall time of an epoch, validation "
                      "included."]
    return "\n".join(lines + ["", *notes]) + "\n"


def figures(runs: dict[str, dict], directory: Path) -> None:
    """`bound.png`: every run's validation bound against epochs and against training seconds,
    overlaid; `samples.png`: each run's decoded prior draws (its `plots/<run>/samples.png`)."""
    done = {name: run for name, run in runs.items() if "test" in run}
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for name, run in done.items():
        epochs, bound = read_curve(run["curves"] / "eval" / "bound.tsv")
        _, seconds = read_curve(run["curves"] / "train" / "epoch_seconds.tsv")
        elapsed = np.cumsum(seconds)
        by_epoch.plot([e + 1 for e in epochs], bound, label=name)
        by_time.plot(elapsed[:len(bound)], bound, label=name)
    by_epoch.set(xlabel="epoch", ylabel="validation bound (nats)", title="Validation bound against epochs")
    by_time.set(xlabel="training seconds", xscale="log", title="... and against training time")
    by_time.legend(fontsize=7, ncol=2)
    fig.savefig(directory / "bound.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    if done:
        fig, axes = plt.subplots(len(done), 1, figsize=(8, 1.6 * len(done)), squeeze=False)
        for ax, (name, run) in zip(axes[:, 0], done.items()):
            ax.imshow(plt.imread(run["samples"]))
            ax.set_axis_off()
            ax.set_title(name, fontsize=8)
        fig.savefig(directory / "samples.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
