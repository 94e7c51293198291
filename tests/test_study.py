"""The study's figures from the files train and evaluate write (dvclive's .tsv curves, samples.png)."""

import matplotlib.pyplot as plt
import numpy as np

from vae_tf.study import figures


def curves(folder, **splits):
    """dvclive's layout: <folder>/<split>/<metric>.tsv, a header and one `step\\tvalue` row per epoch."""
    for split, metrics in splits.items():
        (folder / split).mkdir(parents=True)
        for metric, values in metrics.items():
            rows = "".join(f"{step}\\t{value}\\n" for step, value in enumerate(values))
            (folder / split / f"{metric}.tsv").write_text(f"step\\t{metric}\\n{rows}")
    return folder


def test_a_run_without_a_bound_is_named_not_plotted(tmp_path):
    """The AAE trains on no bound of log p(x) (its dvclive has no bound.tsv): the bound's figure
    leaves it out and says so, samples.png still shows it, and a run not yet evaluated is in
    neither. Runs trained until early stopping have bound.png, short-budget runs a figure apart."""
    from vae_tf.config import Params

    short, long = (Params.model_validate({"training": {"epochs": 10, "early_stopping_patience": patience}})
                   for patience in (10, 5))
    samples = tmp_path / "samples.png"
    plt.imsave(samples, np.zeros((8, 16)))
    runs = {
        "vae": {"params": short, "test": {}, "samples": samples, "curves": curves(
            tmp_path / "vae", eval={"bound": [-250.0, -245.0]}, train={"epoch_seconds": [2.0, 1.0]})},
        "aae": {"params": short, "test": {}, "samples": samples, "curves": curves(
            tmp_path / "aae", eval={"reconstruction": [-240.0, -230.0]}, train={"epoch_seconds": [2.0, 1.0]})},
        "iwae": {"params": long, "curves": tmp_path / "iwae"},  # not evaluated yet
    }
    out = tmp_path / "reports"
    out.mkdir()
    assert figures(runs, out) == ["aae"]
    assert plt.imread(out / "bound_short_budget.png").shape[0] > 100 and not (out / "bound.png").exists()
    assert plt.imread(out / "samples.png").shape[0] > 2 * plt.imread(samples).shape[0]  # two panels
    runs["iwae"].update(test={}, samples=samples, curves=curves(
        tmp_path / "iwae", eval={"bound": [-240.0]}, train={"epoch_seconds": [3.0]}))
    figures(runs, out)
    assert plt.imread(out / "bound.png").shape[0] > 100


def test_an_ais_figure_far_above_is_is_flagged_with_its_figures():
    """AIS bounds log p(x) from below, so its NLL lies above the true one: more than 1 nat above
    IS's, it did not converge, and the table says so instead of giving it as a result."""
    from vae_tf.study import ais_text

    assert ais_text({"nll": 236.7, "ais_nll": 267.3, "ais_nll_stderr": 3.0}) == \
        "not converged: 267.30, 30.60 above IS"  # a kept row: the means' difference
    assert ais_text({"nll": 236.7, "ais_nll": 240.0, "ais_nll_stderr": 3.0, "ais_above_is": [4.0, 0.3]}) == \
        "not converged: 240.00, 4.00 ± 0.30 on its images above IS"
    assert ais_text({"nll": 236.7, "ais_nll": 240.0, "ais_nll_stderr": 3.0, "ais_above_is": [0.2, 0.1]}) == \
        "240.00 ± 3.00"  # on other images than IS's mean: the paired difference decides
    assert ais_text({"nll": 243.37, "ais_nll": 244.04, "ais_nll_stderr": 3.41}) == "244.04 ± 3.41"
    assert ais_text({"nll": 243.0, "ais_nll": None, "ais_nll_stderr": None}) == "–"


def test_a_run_is_paired_with_the_plain_vae_of_its_own_budget_and_seed():
    """`reference` and `seeds_group` read all a run trained with but its parts (resp. its seed),
    through the report's declared settings: a 50-epoch run is set against the 50-epoch VAE, never
    the 10-epoch one, a model of two stochastic layers against the one-layer VAE, and each is
    grouped only with its other seeds."""
    from vae_tf.config import Params
    from vae_tf.config.declared import STAGE_SETTINGS, DeclaredParams
    from vae_tf.study import reference, seeds_group

    def run(seed=0, epochs=10, **sections):
        params = Params.model_validate({"seed": seed, "training": {"epochs": epochs}, **sections})
        return {"params": DeclaredParams(params, STAGE_SETTINGS["report"], "report.json")}

    mixture = {"model": {"prior": {"kind": "mixture", "num_components": 5}}}
    warm = {"objective": {"kind": "elbo", "kl_warmup_epochs": 5}}
    runs = {"vae_warm": run(**warm), "mixture_warm": run(**warm, **mixture),
            "vae": run(), "vae_long": run(epochs=50), "mixture": run(**mixture),
            "mixture_long": run(epochs=50, **mixture), "sa_vae": run(objective={"refinement": {"steps": 5}}),
            "vae_long_seed1": run(seed=1, epochs=50), "mixture_long_seed1": run(seed=1, epochs=50, **mixture),
            "other_data": run(data={"validation_size": 7}, **mixture),
            "vae_2l": run(model={"upper_layers": [{"latent_dim": 2}]})}
    assert {name: reference(name, runs) for name in runs} == {
        "vae_warm": "vae_warm", "mixture_warm": "vae_warm",  # a KL warm-up is the protocol's: kept
        "vae": "vae", "vae_long": "vae_long", "mixture": "vae", "mixture_long": "vae_long", "sa_vae": "vae",
        "vae_long_seed1": "vae_long_seed1", "mixture_long_seed1": "vae_long_seed1", "other_data": None,
        "vae_2l": "vae"}  # two stochastic layers against one
    groups = {name: seeds_group(r["params"]) for name, r in runs.items()}
    assert groups["mixture_long"] == groups["mixture_long_seed1"] and groups["vae_long"] == groups["vae_long_seed1"]
    assert len({groups[name] for name in ("vae", "vae_long", "mixture", "mixture_long", "sa_vae", "other_data",
                                          "vae_warm")}) == 7


def test_a_kept_row_stands_in_only_for_the_same_settings_on_the_same_data():
    """results.json keeps each row with its run's settings and data (`measured_alike`): a run not
    evaluated here shows its kept row while both match; pointed at another data set (one edit of
    data.path) or with its settings changed, it shows none, never the old data's figures."""
    from vae_tf.study import digest, rows

    fashion, mnist = (digest({"source": "idx", "path": path}) for path in ("/data/fashion", "/data/mnist"))
    kept = {"vae": {"params": "p1", "data": fashion, "nll": 229.26}}
    runs = {"vae": {}}  # not evaluated in this workspace
    assert rows(runs, {"vae": {"params": "p1", "data": fashion}}, kept) == {"vae": kept["vae"]}
    assert rows(runs, {"vae": {"params": "p1", "data": mnist}}, kept) == {"vae": None}
    assert rows(runs, {"vae": {"params": "p2", "data": fashion}}, kept) == {"vae": None}
    assert rows(runs, {"vae": {"params": "p1", "data": fashion}}, {}) == {"vae": None}


def test_a_rows_setting_names_each_stochastic_layer():
    from vae_tf.config import Params
    from vae_tf.study import setting

    one = Params.model_validate({"model": {"latent_dim": 40, "hidden_units": [300, 300], "network": {"gated": True}}})
    two = Params.model_validate({"model": {**one.model.model_dump(mode="json"),
                                           "upper_layers": [{"latent_dim": 20, "hidden_units": [100],
                                                             "posterior": {"kind": "iaf"}}]}})
    assert setting(one) == "300-300 gated, L=40, gaussian q, standard_normal p"
    assert setting(two) == "300-300 gated, L=40 + 100 L=20 (iaf q), gaussian q, standard_normal p"
