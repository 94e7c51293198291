"""The pipeline for real: `dvc repro` on tiny params in a temporary copy of the repository."""

import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import TINY, TINY_AVB

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
# Tiny params, the three experiments (IWAE with K = 3; AVB) and a two-point K study.
PIPELINE = {**TINY, "experiments": {"vae": {}, "iwae": {"objective": {"kind": "iwae", "num_samples": 3}}, "avb": TINY_AVB},
            "k_study": {"num_samples": [1, 2]}}
EXPERIMENTS = ("vae", "iwae", "avb")
RUNS = [*EXPERIMENTS, "k_study/k1", "k_study/k2"]
OUTPUTS = ["data/prepared/train.npz", "data/prepared/meta.json",
           *(f"export/{name}/1/saved_model.pb" for name in EXPERIMENTS), "reports/summary.json", "reports/summary.md",
           "reports/plots/kl_per_dimension.png", "reports/plots/discriminator_accuracy.png",
           "reports/k_study.json", "reports/k_study.csv", "reports/k_study.png", "reports/metrics.json",
           *(f"reports/overlays/{name}.csv" for name in ("bound", "kl", "reconstruction", "kl_per_dimension")),
           *(f"{folder}/{run}/{name}" for run in RUNS for folder, name in
             [("models", "model.keras"), ("dvclive", "metrics.json"), ("plots", "reconstructions.png"),
              ("plots", "samples.png"), ("plots", "latent_codes.png"), ("plots", "latent_dimensions.csv")]),
           *(f"metrics/{run}.json" for run in RUNS)]


def venv_env() -> dict:
    """The environment with this interpreter's bin first, so `dvc` and `python` are the tested ones."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def run(args, cwd, check=True):
    result = subprocess.run(args, cwd=cwd, env=venv_env(), capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def copy_repository(target: Path, params: dict) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file() and name != "dvc.lock":
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in params.items():  # sections merged, experiments replaced
        merge = isinstance(values, dict) and section != "experiments"
        base[section] = {**base[section], **values} if merge else values
    (target / "params.yaml").write_text(yaml.safe_dump(base))
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        run(command, target)
    return target


def repro(cwd, *args):
    return run(["dvc", "repro", *args], cwd).stdout


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    repo = copy_repository(tmp_path_factory.mktemp("repo"), PIPELINE)
    first = run(["dvc", "repro"], repo)
    return repo, first.stdout + first.stderr  # the log as DVC shows it


def test_repro_produces_every_declared_output(pipeline):
    repo, first = pipeline
    stages = ["prepare", "resolve", "report", "k_study"] + [f"{stage}@{exp}" for exp in EXPERIMENTS
                                                 for stage in ("train", "evaluate", "export")]
    stages += [f"{stage}@{k}" for k in (1, 2) for stage in ("train_k", "evaluate_k")]
    assert sorted(ran_stages(first)) == sorted(stages)
    for noise in ("absl::InitializeLog", "oneDNN", "cuda drivers", "cuInit", "will be ignored", "is empty"):
        assert noise not in first, noise  # TensorFlow's start-up notices, Keras' and DVC's warnings
    for name in OUTPUTS:
        assert (repo / name).exists(), name
    metrics = json.loads((repo / "metrics/vae.json").read_text())
    assert metrics["estimator"] == "importance sampling, q(z|x) proposal, K=20"
    assert metrics["elbo"] < -metrics["nll"]  # the bound is below the estimate of log p(x)
    surgery = metrics["elbo_surgery"]  # the KL term = I(x; z) + KL(q(z) || p(z)), I at most log N
    assert 0 < surgery["mutual_information"] <= np.log(metrics["num_examples"])
    assert surgery["kl_aggregate_posterior_prior"] > 0
    assert metrics["ais"]["estimator"] == "annealed importance sampling from p(z), 2 chains x 10 HMC steps (1 leapfrog)"
    iwae = json.loads((repo / "metrics/iwae.json").read_text())
    assert iwae["iwae_num_samples"] == 3 and iwae["iwae_bound"] < -iwae["nll"]
    avb = json.loads((repo / "metrics/avb.json").read_text())
    assert avb["estimator"] == "importance sampling, Gaussian fitted to 20 draws of q(z|x), scale x2 proposal, K=20"
    assert avb["elbo"] < -avb["nll"] and "ais" in avb
    curves = repo / "dvclive/avb/plots/metrics"
    for split in ("train", "eval"):
        assert (curves / split / "discriminator_accuracy.tsv").exists() and (curves / split / "discriminator_loss.tsv").exists()
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)[""]["data"]
    assert sorted(shown) == ["reports/k_study.json", "reports/metrics.json"]  # the headline: numbers only
    headline = shown["reports/metrics.json"]["data"]
    assert headline["vae"]["nll"] == metrics["nll"] and headline["avb"]["ais_nll"] == avb["ais"]["nll"]
    assert shown["reports/k_study.json"]["data"]["k2"]["nll"] == json.loads((repo / "metrics/k_study/k2.json").read_text())["nll"]


def test_report_and_k_study_hold_the_runs_numbers(pipeline):
    repo, _ = pipeline
    summary = json.loads((repo / "reports/summary.json").read_text())["experiments"]
    table = (repo / "reports/summary.md").read_text()
    for name in EXPERIMENTS:
        test = json.loads((repo / f"metrics/{name}.json").read_text())
        training = json.loads((repo / f"dvclive/{name}/metrics.json").read_text())
        assert summary[name]["nll"] == test["nll"] and summary[name]["active_units"] == test["active_units"]
        assert summary[name]["seconds_per_epoch"] == training["seconds_per_epoch_median"]
        assert f"| {name} | " in table and f"{test['nll']:.2f} ± {test['nll_stderr']:.2f}" in table
        assert f"{test['ais']['nll']:.2f} ± {test['ais']['nll_stderr']:.2f}" in table
        assert f"- {name}: IS = {test['estimator']}; AIS = {test['ais']['estimator']}" in table
    assert "iwae K=3 (dreg)" in table and "elbo K=1 (reparameterized)" in table
    assert "avb K=1 (adaptive contrast, 1 T step / update)" in table
    accuracy = json.loads((repo / "dvclive/avb/metrics.json").read_text())["eval"]["discriminator_accuracy"]
    assert summary["avb"]["val_discriminator_accuracy"] == accuracy and f"avb {accuracy:.3f}" in table
    rows = list(csv.DictReader((repo / "reports/k_study.csv").read_text().splitlines()))
    assert [int(row["num_samples"]) for row in rows] == [1, 2, 3]  # K = 3: the iwae experiment's own run
    for row in rows:
        run = "iwae" if row["num_samples"] == "3" else f"k_study/k{row['num_samples']}"
        test = json.loads((repo / f"metrics/{run}.json").read_text())
        assert float(row["nll"]) == pytest.approx(test["nll"]) and int(row["active_units"]) == test["active_units"]
        assert test["iwae_num_samples"] == int(row["num_samples"])


def test_second_repro_runs_nothing_and_evaluation_params_rerun_only_evaluation(pipeline):
    repo, _ = pipeline
    assert ran_stages(repro(repo)) == []
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluation"]["num_samples"] = 30
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    evaluations = [*(f"evaluate@{name}" for name in EXPERIMENTS), "evaluate_k@1", "evaluate_k@2"]
    assert sorted(ran_stages(repro(repo))) == sorted(["resolve", *evaluations, "report", "k_study"])
    assert json.loads((repo / "metrics/vae.json").read_text())["num_samples"] == 30


def test_same_seed_gives_identical_metrics(pipeline, tmp_path):
    repo, _ = pipeline
    other = copy_repository(tmp_path, PIPELINE)
    repro(other, "evaluate@vae")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluation"]["num_samples"] = 20
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    repro(repo, "evaluate@vae")

    def numbers(folder):
        metrics = json.loads((folder / "metrics/vae.json").read_text())
        metrics.pop("seconds")
        live = json.loads((folder / "dvclive/vae/metrics.json").read_text())
        live.pop("seconds_per_epoch_median"), live.pop("peak_memory_mb"), live["train"].pop("epoch_seconds")
        return metrics, live

    assert numbers(repo) == numbers(other)


def test_changing_one_experiment_reruns_only_its_stages_and_the_report(pipeline):
    repo, _ = pipeline
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["experiments"]["vae"] = {"training": {"learning_rate": 0.002}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert sorted(ran_stages(repro(repo))) == ["evaluate@vae", "export@vae", "report", "resolve", "train@vae"]


def test_editing_a_base_section_reruns_only_the_experiments_that_read_it(pipeline):
    """iwae and avb set their own objective kind, so the base objective (elbo's) is not theirs;
    the K study's runs are iwae's. Only vae (and the report) rerun."""
    repo, _ = pipeline
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["objective"]["kl_weight"] = 0.75
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert sorted(ran_stages(repro(repo))) == ["evaluate@vae", "export@vae", "report", "resolve", "train@vae"]
    assert json.loads((repo / "resolved/vae/train.json").read_text())["objective"]["kl_weight"] == 0.75


def test_experiments_compare_with_dvc_metrics_plots_and_exp_show(tmp_path):
    """HEAD's results and two experiments queued (`dvc exp run --queue`) and run at once by two
    workers (`dvc queue start --jobs 2`), each in its own DVC workspace: both succeed, the
    workspace keeps HEAD's outputs until one is applied, and they are compared by `dvc metrics
    diff`, `dvc plots diff` and `dvc exp show`."""
    one_run = {**TINY, "experiments": {"vae": {}}, "k_study": {"experiment": "vae", "num_samples": [2]}}
    repo = copy_repository(tmp_path, one_run)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump({**params, "experiments": {"vae": {}}}))
    repro(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], repo)
    head = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    for name, rate in (("fast", 0.01), ("slow", 0.0001)):
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"training.learning_rate={rate}"], repo)
    run(["dvc", "queue", "start", "--jobs", "2"], repo)
    status = ""
    for _ in range(300):  # about 90 s measured
        status = run(["dvc", "queue", "status"], repo).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert [line.split()[-1] for line in status.splitlines()[1:3]] == ["Success", "Success"], status
    assert json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout) == head  # the queue left it alone

    table = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    (head_row,) = [row for row in table if row["rev"] != "workspace"]  # HEAD's commit, with its experiments
    experiments = {exp["name"]: exp["revs"][0]["data"] for exp in head_row["experiments"]}
    assert sorted(experiments) == ["fast", "slow"]
    nll = {name: data["metrics"]["reports/metrics.json"]["data"]["vae"]["nll"] for name, data in experiments.items()}
    run(["dvc", "exp", "apply", "slow"], repo)
    applied = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)  # workspace: slow's results
    assert applied[""]["data"]["reports/metrics.json"]["data"]["vae"]["nll"] == nll["slow"]
    assert nll["fast"] != nll["slow"]
    for data in experiments.values():  # numbers only: no text field becomes a column
        for values in data["metrics"].values():
            assert all(isinstance(v, (int, float)) for run_values in values["data"].values() for v in run_values.values())

    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "fast", "--json"], repo).stdout)
    change = diff["reports/metrics.json"]["vae.nll"]
    assert change["new"] == nll["fast"] and change["old"] != change["new"]  # HEAD's numbers load
    changed = run(["dvc", "exp", "show", "--no-pager", "--only-changed", "--csv"], repo).stdout.splitlines()[0].split(",")
    assert "training.learning_rate" in changed and "vae.nll" in changed and len(changed) < 40

    plots = json.loads(run(["dvc", "plots", "diff", "HEAD", "fast", "slow", "--json"], repo).stdout)
    assert not plots.get("errors"), plots.get("errors")
    (bound,) = plots["data"]["reports/overlays/bound.csv"]
    assert sorted(bound["revisions"]) == ["HEAD", "fast", "slow"]  # the three overlaid in one chart
    points = bound["content"]["data"]["values"]
    assert {(p["rev"], p["series"]) for p in points} == {(rev, f"vae {split}") for rev in ("HEAD", "fast", "slow")
                                                         for split in ("training", "validation")}
    assert bound["content"]["encoding"]["color"]["field"] == "series"  # the overlay template: a line per run and split
    assert {"K study, test NLL", "reports/overlays/kl_per_dimension.csv"} <= set(plots["data"])


def test_replacing_an_npz_source_reruns_prepare(tmp_path):
    repo = copy_repository(tmp_path, {"data": {"source": "npz", "path": "data/raw/mine.npz", "preprocessing": "scale"}})
    rng = np.random.default_rng(0)

    def write_source(n_train):
        np.savez(repo / "data/raw/mine.npz", train=rng.uniform(size=(n_train, 4, 4)), test=rng.uniform(size=(3, 4, 4)),
                 val=rng.uniform(size=(2, 4, 4)))

    write_source(5)
    assert ran_stages(repro(repo, "prepare")) == ["prepare"]
    assert ran_stages(repro(repo, "prepare")) == []
    write_source(7)
    assert ran_stages(repro(repo, "prepare")) == ["prepare"]
    assert json.loads((repo / "data/prepared/meta.json").read_text())["sizes"]["train"] == 7


def test_replacing_an_idx_file_reruns_prepare(tmp_path):
    from tests.test_data import idx_folder

    repo = copy_repository(tmp_path, {"data": {"source": "idx", "path": "data/raw/idx", "validation_size": 2,
                                               "preprocessing": "binarize"}})
    idx_folder(repo / "data/raw", np.random.default_rng(0), n_train=5)
    assert ran_stages(repro(repo, "prepare")) == ["prepare"]
    assert ran_stages(repro(repo, "prepare")) == []
    idx_folder(repo / "data/raw", np.random.default_rng(1), n_train=7)
    assert ran_stages(repro(repo, "prepare")) == ["prepare"]
    assert json.loads((repo / "data/prepared/meta.json").read_text())["sizes"] == {"train": 5, "val": 2, "test": 5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A copy with one tiny experiment trained by `dvc repro train@vae`, and its params file."""
    repo = copy_repository(tmp_path_factory.mktemp("trained"), {**TINY, "experiments": {"vae": {}},
                                                                       "k_study": {"experiment": "vae", "num_samples": [2]}})
    repro(repo, "train@vae")
    return repo, (repo / "params.yaml").read_text()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        # refused when params are read (prepare validates them all)
        ({"training": {"epochz": 3}}, "training.epochz: unknown key"),
        ({"data": {"source": "npz:data/raw/mine.npz"}}, "data.source: the file goes in data.path (which DVC tracks): "
                                                        "write source: npz and path: data/raw/mine.npz"),
        ({"data": {"source": "npz", "path": "data/raw/README.md"}}, "data.path data/raw/README.md: not an .npz archive"),
        # a 4 TB layer: an out-of-memory error once, now refused before any weight is allocated
        ({"model": {"hidden_units": [1_000_000, 1_000_000]}}, "model.hidden_units: at most 16 layers of at most 8192"),
        # what only the data shows: refused by resolve (against prepare's meta.json), no longer by train
        ({"model": {"likelihood": "bernoulli"}}, "experiments.vae: model.likelihood: 'bernoulli' needs binary data"),
        ({"model": {"prior": {"kind": "vamp", "num_components": 5000}}},
         "experiments.vae: model.prior.num_components: 5000 distinct pseudo-inputs cannot start as the 1000 training"),
        # what evaluate would refuse, or die of, after hours of training: refused by resolve too
        ({"evaluation": {"batch_size": 1_000_000, "chunk_size": 1_000_000}},
         "experiments.vae: evaluation.batch_size x evaluation.chunk_size: importance sampling would decode"),
        ({"training": {"batch_size": 1_000_000}, "objective": {"num_samples": 10_000}},
         "experiments.vae: training.batch_size x objective.num_samples: a training step would decode"),
        ({"model": {"latent_dim": 4096}, "evaluation": {"surgery_samples": 10_000}},
         "experiments.vae: evaluation.surgery_samples x surgery_examples: the ELBO surgery would hold"),
    ],
)
def test_user_errors_exit_nonzero_with_one_clear_line_and_the_trained_model_kept(trained, params, message):
    """DVC deletes a stage's outputs before running it: every refusal params can decide comes from
    prepare or resolve, so the model trained before is left as it was."""
    repo, shipped = trained
    model = (repo / "models/vae/model.keras").read_bytes()
    base = yaml.safe_load(shipped)
    (repo / "params.yaml").write_text(yaml.safe_dump({**base, **{k: {**base[k], **v} for k, v in params.items()}}))
    try:
        result = run(["dvc", "repro", "train@vae"], repo, check=False)
        assert result.returncode != 0
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("error: ") == 1
        assert "Running stage 'train@vae'" not in result.stdout
        assert (repo / "models/vae/model.keras").read_bytes() == model
    finally:
        (repo / "params.yaml").write_text(shipped)


def test_killed_repro_resumes_from_its_checkpoint(tmp_path):
    import signal
    import time

    tiny = {**TINY, "training": {"epochs": 300, "checkpoint_every_epochs": 2, "early_stopping_patience": 1000}}
    repo = copy_repository(tmp_path, tiny)
    repro(repo, "prepare")
    process = subprocess.Popen(["dvc", "repro", "train@vae"], cwd=repo, env=venv_env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = repo / "checkpoints/vae/training_metadata.json"
    deadline = time.time() + 120
    while not (metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 4):
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    resumed_epoch = json.loads(metadata.read_text())["epoch"]
    assert not (repo / "models/vae/model.keras").exists()

    repro(repo, "train@vae")
    assert (repo / "models/vae/model.keras").exists() and not (repo / "checkpoints/vae").exists()
    rows = (repo / "dvclive/vae/plots/metrics/train/epoch_seconds.tsv").read_text().splitlines()[1:]
    seconds = {int(step): float(value) for step, value in (row.split("\t") for row in rows)}
    assert sorted(seconds) == list(range(300))  # one curve, the epochs before the kill kept
    # each process's first epoch includes XLA compilation: the second process began at the
    # checkpoint's epoch, so the run resumed rather than restarted
    typical = sorted(seconds.values())[150]
    assert resumed_epoch >= 4 and seconds[resumed_epoch] > 10 * typical and seconds[0] > 10 * typical
    assert ran_stages(repro(repo, "train@vae")) == []


def test_a_study_runs_the_stages_on_its_own_params_and_writes_its_table(tmp_path):
    """studies/fashion_mnist's pipeline, pointed at tiny IDX files and tiny settings: `dvc repro`
    in its folder (a DVC project of its own) trains and evaluates its runs with the repository's
    stages and writes results.md with each run's figures beside the published one; the root
    project does not see it (`dvc status` there is unchanged)."""
    from tests.test_data import idx_folder

    repo = copy_repository(tmp_path, {})
    raw, _ = idx_folder(tmp_path, np.random.default_rng(0), n_train=40, n_test=10)
    study = repo / "studies/fashion_mnist"
    params = yaml.safe_load((study / "params.yaml").read_text())
    params["data"].update(path=str(raw), validation_size=8)  # another IDX folder: one edit, dvc.yaml's dep follows
    params["model"].update(TINY["model"])
    params["training"].update(epochs=2)
    params["evaluation"] = {**TINY["evaluation"], "ais": {**TINY["evaluation"]["ais"], "num_examples": 4}}
    params["experiments"] = {"vae": {}, "iwae5": params["experiments"]["iwae5"], "mine": {"model": {"hidden_units": [8]}, "objective": {"kind": "iwae", "num_samples": 2}},
                             "iwae5_seed1": {**params["experiments"]["iwae5"], "seed": 1}, "vae_seed1": {"seed": 1}}
    params["k_study"] = {"experiment": "iwae5", "num_samples": [2]}
    (study / "params.yaml").write_text(yaml.safe_dump(params))
    before = run(["dvc", "status", "--json"], repo).stdout
    ran = ran_stages(repro(study))
    runs = ("vae", "iwae5", "mine", "iwae5_seed1", "vae_seed1")
    assert sorted(ran) == sorted(["prepare", "resolve", "study", "train_k@2", "evaluate_k@2", "k_study"] +
                                 [f"{stage}@{run}" for run in runs for stage in ("train", "evaluate")])
    assert not (repo / "models").exists() and (study / "models/iwae5/model.keras").exists()
    rows = table_rows(study / "results.md")
    assert sorted(rows) == sorted(runs)
    metrics = json.loads((study / "metrics/iwae5.json").read_text())
    assert rows["iwae5"][6] == f"{metrics['nll']:.2f} ± {metrics['nll_stderr']:.2f}"
    assert rows["iwae5"][8] == f"{-metrics['elbo']:.2f}" and metrics["ais"]["num_examples"] == 4
    assert rows["iwae5"][3:6] == ["2", "2", "cap"]  # epochs run, the best, stopped by the cap (the short budget)
    text = (study / "results.md").read_text()
    assert f"Data: `idx:{raw}`, dynamic_binarize." in text.splitlines()[0]
    assert "The short budget" in text and "until early stopping" not in text  # no run trained to convergence
    assert "- iwae5: 85.54 (MNIST, dynamic binarization); Burda et al. 2015" in text  # apart, its data named
    per_image = {run: np.genfromtxt(study / f"plots/{run}/log_likelihood.csv", delimiter=",", names=True)
                 for run in ("vae", "iwae5")}  # log p(x) of each test image, AIS on the first 4 only
    assert per_image["iwae5"]["importance_sampling"].mean() == pytest.approx(-metrics["nll"], abs=1e-4)
    assert np.isnan(per_image["iwae5"]["ais"][4:]).all() and per_image["iwae5"]["ais"][:4].mean() == pytest.approx(
        -metrics["ais"]["nll"], abs=1e-4)
    difference = per_image["vae"]["importance_sampling"] - per_image["iwae5"]["importance_sampling"]
    assert rows["iwae5"][7] == f"{difference.mean():+.2f} ± {difference.std(ddof=1) / np.sqrt(10):.2f} (vae)"
    assert rows["vae"][7] == "(the reference)" and rows["mine"][7] == "–"
    assert rows["vae_seed1"][7] == "(the reference)" and rows["iwae5_seed1"][7].endswith("(vae_seed1)")
    # the seeds' part: iwae5 beside iwae5_seed1, each against the VAE of its own seed
    seeds = {line.split(" | ")[0][2:]: line.split(" | ") for line in (study / "results.md").read_text()
             .split("Seeds:")[1].splitlines() if line.startswith("| ") and not line.startswith(("| runs", "| ---"))}
    assert sorted(seeds) == ["iwae5, iwae5_seed1", "vae, vae_seed1"] and seeds["vae, vae_seed1"][1] == "0, 1"
    nll = [json.loads((study / f"metrics/{run}.json").read_text())["nll"] for run in ("iwae5", "iwae5_seed1")]
    assert seeds["iwae5, iwae5_seed1"][2] == f"{np.mean(nll):.2f} ± {np.std(nll, ddof=1):.2f}"
    assert seeds["iwae5, iwae5_seed1"][3].split(", ")[0] == rows["iwae5"][7].split(" (")[0]
    assert seeds["vae, vae_seed1"][3] == "–, –" and seeds["vae, vae_seed1"][4] == "–"
    k_study = json.loads((study / "k_study/k_study.json").read_text())
    assert sorted(k_study) == ["k2", "k5"] and k_study["k5"]["nll"] == pytest.approx(metrics["nll"])
    assert (study / "reports/bound_short_budget.png").exists() and (study / "reports/samples.png").exists()
    assert ran_stages(repro(study)) == [] and run(["dvc", "status", "--json"], repo).stdout == before
    # A study outlives its workspace: with mine's outputs gone, its row is kept from results.json
    # (as measured), until its settings change
    kept = json.loads((study / "results.json").read_text())
    assert sorted(kept) == sorted(runs) and kept["iwae5"]["nll"] == metrics["nll"]
    shutil.rmtree(study / "plots/mine")
    (study / "metrics/mine.json").unlink()
    assert ran_stages(repro(study, "-s", "study")) == ["study"]
    again = table_rows(study / "results.md")
    assert again[f"mine (kept, {datetime.date.today().isoformat()})"][3:] == rows["mine"][3:]
    assert json.loads((study / "results.json").read_text()) == kept
    # ... and a run is paired with a reference evaluated in an earlier workspace, from its log p(x)
    # per test image kept beside the rows (per_image/<run>.csv)
    shutil.rmtree(study / "plots/vae")
    (study / "metrics/vae.json").unlink()
    assert ran_stages(repro(study, "-s", "study")) == ["study"]
    assert table_rows(study / "results.md")["iwae5"][7] == rows["iwae5"][7]
    params["experiments"]["mine"]["model"]["hidden_units"] = [6]
    (study / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(repro(study, "-s", "resolve", "study")) == ["resolve", "study"]
    assert table_rows(study / "results.md")["mine"][3] == "not run yet"
    assert "mine" not in json.loads((study / "results.json").read_text())
    # a damaged results.json is named, and neither file is rewritten
    table = (study / "results.md").read_text()
    (study / "results.json").write_text("{")
    failed = run(["dvc", "repro", "-s", "-f", "study"], study, check=False)
    assert failed.returncode != 0 and "results.json: not JSON" in failed.stdout + failed.stderr
    assert (study / "results.md").read_text() == table and (study / "results.json").read_text() == "{"


def table_rows(results: Path) -> dict[str, list[str]]:
    """A study's results.md, its first table: each row's cells by its first (the run)."""
    lines = results.read_text().split("Seeds:")[0].splitlines()
    return {line.split(" | ")[0][2:]: line.split(" | ") for line in lines
            if line.startswith("| ") and not line.startswith("| run") and not line.startswith("| ---")}
