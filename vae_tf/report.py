"""Reports across runs: the comparison of experiments, and the K study.

Both read what train (dvclive summary) and evaluate (test metrics) wrote, and only that.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vae_tf.config.schema import SWEEPS  # noqa: E402
from vae_tf.files import atomic_write, json_text, staged_directory  # noqa: E402


def run_row(name: str, run: dict) -> dict:
    """One run's figures: test metrics, and training's seconds per epoch and peak memory."""
    test, training = run["test"], run["training"]
    ais = test.get("ais") or {}
    return {
        "run": name,
        "nll": test["nll"], "nll_stderr": test["nll_stderr"], "nll_estimator": test["estimator"],
        "ais_nll": ais.get("nll"), "ais_nll_stderr": ais.get("nll_stderr"), "ais_estimator": ais.get("estimator"),
        "elbo": test["elbo"], "kl": test["kl"], "iwae_bound": test["iwae_bound"],
        "iwae_num_samples": test["iwae_num_samples"],
        "active_units": test["active_units"], "latent_dim": test["latent_dim"],
        "mutual_information": test["elbo_surgery"]["mutual_information"],
        "kl_aggregate": test["elbo_surgery"]["kl_aggregate_posterior_prior"],
        "seconds_per_epoch": training["seconds_per_epoch_median"], "epochs_run": training["epochs_run"],
        "best_epoch": training.get("best_epoch"), "stopped_by": training.get("stopped_by"),
        "posterior_collapse": training.get("posterior_collapse"),
        "best_val_bound": training.get("best_val_bound"), "peak_memory_mb": training["peak_memory_mb"],
        "val_discriminator_accuracy": training.get("eval", {}).get("discriminator_accuracy"),
    }


def nll_text(value, stderr) -> str:
    return "–" if value is None else f"{value:.2f} ± {stderr:.2f}"


def _read_latent_csv(path: Path) -> list[float]:
    with open(path) as f:
        return [float(row["kl"]) for row in csv.DictReader(f)]


def _comparison_plots(runs: dict[str, dict], adversarial: list[dict], plots_dir: Path) -> None:
    """`plots_dir`: the KL of each latent dimension of every run, and the discriminator's
    accuracy over training of the `adversarial` rows."""
    with staged_directory(plots_dir) as staging:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name, run in runs.items():
            kl = _read_latent_csv(run["latent_csv"])
            ax.plot(range(len(kl)), sorted(kl, reverse=True), marker="o", label=name)
        ax.set(xlabel="latent dimension (sorted by KL)", ylabel="KL(q(z_j|x) || p(z_j)), nats",
               title="KL per latent dimension (test set; implicit q: its Gaussian moments)")
        ax.legend()
        fig.savefig(staging / "kl_per_dimension.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        if adversarial:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for r in adversarial:
                for split, style in (("train", "-"), ("eval", "--")):
                    steps, values = read_curve(runs[r["run"]]["curves"] / split / "discriminator_accuracy.tsv")
                    ax.plot(steps, values, style, label=f"{r['run']} ({'validation' if split == 'eval' else 'training'})")
            ax.axhline(0.5, color="grey", linewidth=0.8)
            ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="Discriminator accuracy over training")
            ax.legend()
            fig.savefig(staging / "discriminator_accuracy.png", dpi=100, bbox_inches="tight")
            plt.close(fig)


def comparison(runs: dict[str, dict], plots_dir: Path, overlays_dir: Path) -> tuple[dict, dict, str]:
    """The experiments side by side: a summary (JSON-able, one entry per experiment), the
    headline metrics (numbers only, for `dvc metrics` and `dvc exp show`), a Markdown table,
    and a plot of the KL of each latent dimension (posterior collapse shows as dimensions with
    KL ~ 0) and, for adversarially trained runs, of the discriminator's accuracy over training,
    written to `plots_dir`; the tables `dvc plots` overlays, written to `overlays_dir`. Each run
    is its test metrics, training summary, `params`, `latent_csv` and `curves` (its dvclive
    plots/metrics folder)."""
    rows = [{**run_row(name, run), "objective": run["params"].objective.describe()} for name, run in runs.items()]
    lines = [
        "| experiment | objective | test NLL, IS | test NLL, AIS | ELBO | gap | L_K (K) | KL = I + hole "
        "| active units | s / epoch | epochs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *(f"| {r['run']} | {r['objective']} | {nll_text(r['nll'], r['nll_stderr'])} | "
          f"{nll_text(r['ais_nll'], r['ais_nll_stderr'])} | {r['elbo']:.2f} | {-r['nll'] - r['elbo']:.2f} | "
          f"{r['iwae_bound']:.2f} ({r['iwae_num_samples']}) | {r['mutual_information'] + r['kl_aggregate']:.2f} = "
          f"{r['mutual_information']:.2f} + {r['kl_aggregate']:.2f} | {r['active_units']} / {r['latent_dim']} | "
          f"{r['seconds_per_epoch']:.3f} | {r['epochs_run']} |" for r in rows),
        "",
        "Test NLL in nats per example, ± one standard error over test images, by estimator:",
        "",
        *(f"- {r['run']}: IS = {r['nll_estimator']}; AIS = {r['ais_estimator'] or 'not run (evaluation.ais is null)'}"
          for r in rows),
        "",
        "ELBO and L_K are bounds on log p(x) on the test set, of the importance-sampling proposal (q(z|x), or the "
        "Gaussian fitted to an implicit q; a hierarchical q's with IWHVI's log q), L_K at the K each model was "
        "trained with. gap: log p(x) - ELBO = KL(q(z|x) || p(z|x)), log p(x) by IS. KL = I + hole: the ELBO "
        "surgery of that proposal over the test images, the mean KL term = the mutual information I(x; z) (at most "
        "log N) + KL(q(z) || p(z)) between the aggregated posterior and the prior (the hole). s / epoch: median "
        "wall time of a training epoch, validation included.",
    ]
    adversarial = [r for r in rows if r["val_discriminator_accuracy"] is not None]
    if adversarial:
        lines += ["", "Discriminator accuracy on validation data, last epoch (1/2: T cannot tell q from its "
                  "reference; 1: always can): " + ", ".join(f"{r['run']} {r['val_discriminator_accuracy']:.3f}"
                                                       for r in adversarial) + "."]
    _comparison_plots(runs, adversarial, plots_dir)
    write_overlays(runs, overlays_dir)
    summary = {"experiments": {r["run"]: {k: v for k, v in r.items() if k != "run"} for r in rows}}
    headline = {r["run"]: {k: r[k] for k in HEADLINE if r[k] is not None} for r in rows}
    return summary, headline, "\n".join(lines) + "\n"


# The numbers per run that DVC shows (`dvc metrics show`, `dvc exp show`); the rest, with the
# estimators' names, is in reports/summary.json and metrics/<run>.json. No timings: they differ
# on every run, and would make every experiment look changed.
HEADLINE = ("nll", "nll_stderr", "ais_nll", "elbo", "kl", "active_units")
CURVES = ("bound", "kl", "reconstruction")  # dvclive fields every objective logs
SPLITS = {"train": "training", "eval": "validation"}


def write_overlays(runs: dict[str, dict], overlays_dir: Path) -> None:
    """Long tables, one per quantity, that the `overlay` plot template draws with a line per
    `series` (run and split) and, across revisions (`dvc plots diff`), a dash per revision:
    `<field>.csv` (epoch, series, field) for each training curve, and
    `kl_per_dimension.csv` (dimension, series, kl), each run's dimensions sorted by KL as in
    `kl_per_dimension.png`."""
    with staged_directory(overlays_dir) as staging:
        for field in CURVES:
            lines = [f"epoch,series,{field}"]
            for name, run in runs.items():
                for split, label in SPLITS.items():
                    path = run["curves"] / split / f"{field}.tsv"
                    if path.exists():
                        lines += [f"{step},{name} {label},{value!r}" for step, value in zip(*read_curve(path))]
            (staging / f"{field}.csv").write_text("\n".join(lines) + "\n")
        lines = ["dimension,series,kl"]
        for name, run in runs.items():
            lines += [f"{j},{name},{kl!r}" for j, kl in enumerate(sorted(_read_latent_csv(run["latent_csv"]), reverse=True))]
        (staging / "kl_per_dimension.csv").write_text("\n".join(lines) + "\n")


def read_curve(path: Path) -> tuple[list[int], list[float]]:
    """A dvclive curve (step, value) from its .tsv."""
    with open(path) as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return [int(row[0]) for row in rows], [float(row[-1]) for row in rows]


K_STUDY_COLUMNS = ("num_samples", "best_val_bound", "iwae_bound", "elbo", "nll", "nll_stderr", "active_units",
                   "seconds_per_epoch", "epochs_run", "peak_memory_mb")
K_STUDY_METRICS = ("nll", "nll_stderr", "best_val_bound")  # reports/k_study.json, per K
K_STUDY_PANELS = (  # (column, axis label)
    ("best_val_bound", "validation bound (nats)"),
    ("seconds_per_epoch", "seconds per epoch"),
    ("nll", "test NLL (nats, IS)"),
    ("active_units", "active units"),
)


def k_study(experiment: str, runs: dict[int, dict], reports_dir: Path, sweep: str = "objective.num_samples") -> None:
    """The K study into `reports_dir`: k_study.csv (one row per K, for `dvc plots`: one field
    per plot against K), k_study.json (`K_STUDY_METRICS` per K, as DVC metrics) and k_study.png
    (validation bound, seconds per epoch, test NLL and active units against K). K is the value
    of the setting `sweep` (`SWEEPS`: the objective's K or a hierarchical posterior's K_tau)."""
    rows = [{"num_samples": k, **{key: v for key, v in run_row(f"k_study/k{k}", run).items() if key != "run"}}
            for k, run in sorted(runs.items())]
    ks = [row["num_samples"] for row in rows]

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, K_STUDY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write_plot(path: Path) -> None:
        fig, axes = plt.subplots(1, len(K_STUDY_PANELS), figsize=(4 * len(K_STUDY_PANELS), 3.2))
        for ax, (column, label) in zip(axes, K_STUDY_PANELS):
            values = [row[column] for row in rows]
            if column == "nll":
                ax.errorbar(ks, values, yerr=[row["nll_stderr"] for row in rows], marker="o", capsize=3)
            else:
                ax.plot(ks, values, marker="o")
            ax.set(xscale="log", xlabel=SWEEPS[sweep], ylabel=label)
            ax.set_xticks(ks, [str(k) for k in ks])
        fig.suptitle(f"K study: experiment {experiment!r} trained at each {sweep}")
        fig.tight_layout()
        fig.savefig(path, dpi=100, bbox_inches="tight", format="png")
        plt.close(fig)

    metrics = {f"k{row['num_samples']}": {key: row[key] for key in K_STUDY_METRICS} for row in rows}
    atomic_write(reports_dir / "k_study.csv", write_csv)
    atomic_write(reports_dir / "k_study.png", write_plot)
    metrics_text = json_text(metrics, str(reports_dir / "k_study.json"))
    atomic_write(reports_dir / "k_study.json", lambda path: path.write_text(metrics_text))
