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
    """The AAE trains on no bound of log p(x) (its dvclive has no bound.tsv): bound.png leaves it
    out and says so, samples.png still shows it, and a run not yet evaluated is in neither."""
    samples = tmp_path / "samples.png"
    plt.imsave(samples, np.zeros((8, 16)))
    runs = {
        "vae": {"test": {}, "samples": samples, "curves": curves(
            tmp_path / "vae", eval={"bound": [-250.0, -245.0]}, train={"epoch_seconds": [2.0, 1.0]})},
        "aae": {"test": {}, "samples": samples, "curves": curves(
            tmp_path / "aae", eval={"reconstruction": [-240.0, -230.0]}, train={"epoch_seconds": [2.0, 1.0]})},
        "iwae": {"curves": tmp_path / "iwae"},  # not evaluated yet
    }
    out = tmp_path / "reports"
    out.mkdir()
    assert figures(runs, out) == ["aae"]
    assert plt.imread(out / "bound.png").shape[0] > 100
    assert plt.imread(out / "samples.png").shape[0] > 2 * plt.imread(samples).shape[0]  # two panels
