import json
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from vae_tf.config import Params
from vae_tf.data import Prepared
from vae_tf.errors import ParamsError, TrainingError
from vae_tf.models import build_model
from vae_tf.training import burda_rate, train
from tests.conftest import TINY, TINY_AVB, meta_for


def test_training_improves_the_validation_elbo_and_logs_with_dvclive(trained):
    model, root = trained
    summary = json.loads((root / "live" / "metrics.json").read_text())
    curves = {name: [float(line.split("\t")[-1]) for line in
                     (root / "live" / "plots" / "metrics" / "eval" / f"{name}.tsv").read_text().splitlines()[1:]]
              for name in ("elbo", "bound")}
    values = curves["bound"]
    assert len(values) == 3 and values[-1] > values[0]
    np.testing.assert_allclose(values, curves["elbo"], rtol=1e-6)  # the elbo objective's bound is the ELBO
    assert summary["epochs_run"] == 3 and summary["best_val_bound"] == pytest.approx(max(values), abs=1e-4)
    assert summary["peak_memory_mb"] > 100
    assert summary["stopped_by"] == "cap" and summary["posterior_collapse"] == "" and summary["eval"]["active_units"] >= 1
    assert not (root / "backup").exists()  # a finished run leaves no checkpoint to resume


def test_nan_loss_stops_training_with_a_clear_error_and_no_model(tmp_path, digits, tiny_params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = np.array(digits.train)
    broken[5, 3] = np.nan
    data = Prepared(train=broken, val=digits.val, test=digits.test, meta=digits.meta)
    with pytest.raises(TrainingError, match="loss became nan.*No model was saved"):
        train(tiny_params, data, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    assert not (tmp_path / "model.keras").exists()


def test_training_and_evaluation_say_how_far_they_are(tmp_path, digits, tiny_params, monkeypatch, capsys):
    """A line for the first and the last epoch (the others within 10 s of a printed one are not
    printed), one per batch of test images, the last with nothing left, and the ELBO surgery's."""
    from vae_tf.evaluation import evaluate_model

    monkeypatch.chdir(tmp_path)
    model = train(tiny_params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup").model
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["epoch 1/3", "epoch 3/3"] and len(lines) == 3
    assert all(" s/epoch" in line and "validation bound -" in line for line in lines[:2])
    best = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert lines[2] == (f"training ended at epoch 3/3 by the epoch budget; kept the weights of epoch "
                        f"{best['best_epoch']}, validation bound {best['best_val_bound']:.2f}")
    evaluation = tiny_params.evaluation.model_copy(update={"batch_size": 8})
    estimates = []
    result = evaluate_model(model, digits.test[:20], evaluation, seed=0,
                            finished=lambda partial: estimates.append(json.loads(json.dumps(partial["metrics"]))))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" in ")[0] for line in lines] == [*(f"evaluated {n}/20 images" for n in (8, 16, 20)),
                                                          "ELBO surgery: 1/1 blocks of draws"]
    assert lines[-2].endswith("about 0 s left") and lines[-1].endswith("about 0 s left")
    # the estimates are handed over (for the stage to write) before the ELBO surgery, and are final
    (before,) = estimates
    assert "elbo_surgery" not in before and before["nll"] == result["metrics"]["nll"] and "ais" in before
    assert {key: value for key, value in result["metrics"].items() if key != "elbo_surgery"} == before


def test_likelihood_must_fit_the_data_representation(digits):
    params = Params.model_validate({"model": {"likelihood": "bernoulli"}})
    with pytest.raises(ParamsError, match="model.likelihood.*binarize or dynamic_binarize"):
        build_model(params, digits.meta)


def test_dense_layers_next_to_the_data_are_bounded_by_its_size():
    """28 x 28 pixels of 256 grey levels: 1337 units on the decoder's last layer at most (2^28
    weights); the refusal comes before any weight is allocated."""
    meta = meta_for(784, "levels", n_levels=256)
    assert build_model(Params.model_validate({"model": {"hidden_units": [8, 64]}}), meta).count_params() > 784 * 256 * 64
    with pytest.raises(ParamsError, match=r"model.hidden_units: \[8, 1338\] on 784 pixels x 256 values each would "
                                          r"give the last dense layer 268,541,952 weights, over the 268,435,456"):
        build_model(Params.model_validate({"model": {"hidden_units": [8, 1338]}}), meta)


def test_kl_warmup_ramps_beta_linearly(digits):
    params = Params.model_validate({**TINY, "objective": {"kind": "elbo", "kl_weight": 0.8, "kl_warmup_epochs": 4}})
    model = build_model(params, digits.meta)
    (warmup,) = model.objective.callbacks()
    assert model.objective.warmup_epochs == 4
    betas = []
    for epoch in range(6):
        warmup.on_epoch_begin(epoch)
        betas.append(float(model.objective.beta.numpy()))
    np.testing.assert_allclose(betas, [0.2, 0.4, 0.6, 0.8, 0.8, 0.8], rtol=1e-6)
    assert build_model(Params.model_validate(TINY), digits.meta).objective.callbacks() == []


def test_burda_schedule_steps_the_rate_by_a_tenth_to_the_seventh_after_three_to_the_i_epochs():
    """Burda et al.: 3^i passes at 1e-3 x 10^(-i/7), i = 0..7, 3280 passes in all."""
    rate = burda_rate(1e-3)
    starts = [(3 ** i - 1) // 2 for i in range(8)]  # 0, 1, 4, 13, 40, 121, 364, 1093
    for i, start in enumerate(starts):
        lasts = (3 ** (i + 1) - 1) // 2 - 1  # the stage's last epoch
        np.testing.assert_allclose([rate(start), rate(lasts)], [1e-3 * 10 ** (-i / 7)] * 2, rtol=1e-12)
    assert (3 ** 8 - 1) // 2 == 3280 and rate(3280) == rate(10**6) == rate(3279) == pytest.approx(1e-4)


def test_training_under_the_burda_schedule_ends_at_its_rate(tmp_path, digits):
    """Five epochs: the rate of epoch 4 (from 0) is stage 2's, 10^(-2/7) of the base."""
    params = Params.model_validate({**TINY, "training": {**TINY["training"], "epochs": 5, "schedule": "burda",
                                                         "learning_rate": 0.002}})
    history = train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    assert float(history.model.optimizer.learning_rate.numpy()) == pytest.approx(0.002 * 10 ** (-2 / 7), rel=1e-6)
    np.testing.assert_allclose(history.history["learning_rate"], [0.002 * 10 ** (-i / 7) for i in (0, 1, 1, 1, 2)],
                               rtol=1e-6)


class Interrupt(keras.callbacks.Callback):
    """Stands in for a kill: the process stops mid-run, leaving the checkpoint behind."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at_epoch:
            raise KeyboardInterrupt


def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_previous_one(tmp_path, digits, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = Params.model_validate({**TINY, "training": {"epochs": 6, "checkpoint_every_epochs": 2}})
    save_weights, calls = keras.Model.save_weights, []

    def killed_on_the_second_checkpoint(model, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2:  # the kill comes once the file is begun: 96 bytes of it are on disk
            Path(filepath).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(88))
            raise KeyboardInterrupt
        return save_weights(model, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", killed_on_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    resumed = train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    assert resumed.epoch == [2, 3, 4, 5]  # from the complete checkpoint of epoch 2, not the torn one of epoch 4
    assert (tmp_path / "model.keras").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("parts", "clone"), [({}, False), (TINY_AVB, False), ({}, True)],
                         ids=["vae", "avb", "vae-fresh-clone"])
def test_killed_run_resumes_into_the_same_run_as_an_uninterrupted_one(tmp_path, digits, monkeypatch, parts, clone):
    """Resumed where it was killed, or (`clone`) elsewhere from its checkpoint folder alone, as a
    fresh clone of a repository that carries it has it: no dvclive folder, no model."""
    monkeypatch.chdir(tmp_path)
    params = Params.model_validate({**TINY, **parts, "training": {"epochs": 12, "checkpoint_every_epochs": 2}})

    def run(folder, callbacks=()):
        return train(params, digits, folder / "model.keras", folder / "live", folder / "backup", list(callbacks))

    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", [Interrupt(at_epoch=7)])
    assert not (tmp_path / "killed" / "model.keras").exists()
    assert json.loads((tmp_path / "killed" / "backup" / "training_metadata.json").read_text())["epoch"] == 6
    (tmp_path / "killed" / "live" / "metrics.json").write_text("")  # killed while dvclive wrote it (seen in CI)
    if clone:
        shutil.move(tmp_path / "killed", tmp_path / "machine")
        (tmp_path / "killed").mkdir()
        shutil.move(tmp_path / "machine" / "backup", tmp_path / "killed" / "backup")
    resumed = run(tmp_path / "killed")
    assert resumed.epoch == list(range(6, 12))  # resumed from the last checkpoint
    # the same minibatches, noise, optimizer and early-stopping state: the same numbers, epoch by epoch
    for name in ("loss", "val_bound"):
        np.testing.assert_array_equal(resumed.history[name], whole.history[name][6:], err_msg=name)
    summaries = [json.loads((tmp_path / name / "live" / "metrics.json").read_text()) for name in ("whole", "killed")]
    for key in ("epochs_run", "best_epoch", "best_val_bound"):
        assert summaries[1][key] == summaries[0][key], key
    assert summaries[1]["resumed_from_epoch"] == 6 and summaries[0]["resumed_from_epoch"] == 0
    curves = [(tmp_path / name / "live" / "plots" / "metrics" / "eval" / "bound.tsv").read_text() for name in
              ("whole", "killed")]
    assert curves[1] == curves[0]  # the curve kept the epochs before the kill, and the resumed ones match
    whole_model, resumed_model = (keras.saving.load_model(tmp_path / name / "model.keras")
                                  for name in ("whole", "killed"))
    for a, b in zip(whole_model.weights, resumed_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


@pytest.mark.parametrize(("devices", "message"), [
    (["/gpu:7"], r"training.distribute.devices: no device '/gpu:7' here; visible: \['/cpu:0'"),
    (["bogus"], r"training.distribute.devices: 'bogus' is not a device name"),
    (["/cpu:0", "/device:CPU:0"], r"training.distribute.devices: '/cpu:0' and '/device:CPU:0' name the same device"),
    (["/job:localhost/replica:0/task:0/device:CPU:0"], r"names a job, replica or task; name the device alone")])
def test_distribution_over_devices_that_are_not_there_is_refused(devices, message):
    from vae_tf.training import strategy_of

    params = Params.model_validate({"training": {"distribute": {"strategy": "mirrored", "devices": devices}}})
    with pytest.raises(ParamsError, match=message):
        strategy_of(params)


def test_a_mirrored_strategy_refuses_a_tf_config_that_is_not_json(monkeypatch):
    """TensorFlow's own reading of it raised JSONDecodeError, a traceback."""
    from vae_tf.errors import ClusterError
    from vae_tf.training import strategy_of

    monkeypatch.setenv("TF_CONFIG", "{garbage")
    params = Params.model_validate({"training": {"distribute": {"strategy": "mirrored"}}})
    with pytest.raises(ClusterError, match="TF_CONFIG: not JSON"):
        strategy_of(params)


def test_saved_models_are_byte_identical_for_identical_weights(tmp_path, trained):
    """Keras stamps a .keras archive with the time it was saved and names shared objects by
    their memory address; `save_model` does neither, so a retrain to the same weights leaves
    dvc.lock unchanged: the same model saved twice gives the same bytes, and saved again after a load (other objects,
    other addresses), gives the same configuration. The archive still loads."""
    import time

    import keras

    from vae_tf.files import save_model

    model, _ = trained
    save_model(model, tmp_path / "a.keras")
    time.sleep(2.1)  # zip dates have 2 s resolution
    save_model(model, tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    loaded = keras.models.load_model(tmp_path / "b.keras")
    for saved, original in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(saved.numpy(), original.numpy())
    save_model(loaded, tmp_path / "c.keras")  # its config names other objects at other addresses
    with zipfile.ZipFile(tmp_path / "a.keras") as a, zipfile.ZipFile(tmp_path / "c.keras") as c:
        assert a.read("config.json") == c.read("config.json")


def _train_tiny(tmp_path, digits, monkeypatch, **sections):
    """A tiny model of TINY with `sections` merged over it, trained; its dvclive summary."""
    from vae_tf.config.schema import deep_merge

    monkeypatch.chdir(tmp_path)
    params = Params.model_validate(deep_merge(TINY, sections))
    train(params, digits, tmp_path / "model.keras", tmp_path / "live", tmp_path / "backup")
    return json.loads((tmp_path / "live" / "metrics.json").read_text())


def test_why_training_stopped_is_kept_patience_or_cap(tmp_path, digits, monkeypatch, capsys):
    """A model that cannot improve (SGD at 1e-9: the same validation bound every epoch) stops by
    patience after one epoch of it, keeping epoch 1; the `trained` run of 3 epochs ran to the cap."""
    summary = _train_tiny(tmp_path, digits, monkeypatch, training={
        "epochs": 10, "optimizer": "sgd", "learning_rate": 1e-9, "early_stopping_patience": 1})
    assert (summary["epochs_run"], summary["stopped_by"], summary["best_epoch"]) == (2, "patience", 1)
    assert "training ended at epoch 2/10 by early stopping (no better validation bound in 1 epochs)" in \
        capsys.readouterr().out


def test_a_run_within_its_kl_warmup_keeps_its_last_weights(tmp_path, digits, monkeypatch, capsys):
    """Early stopping watches from the end of the warm-up on: 3 epochs of a 10-epoch warm-up end
    by the cap, keeping epoch 3 (whose validation bound the summary gives)."""
    summary = _train_tiny(tmp_path, digits, monkeypatch, objective={"kind": "elbo", "kl_warmup_epochs": 10})
    bounds = [float(line.split("\t")[-1]) for line in
              (tmp_path / "live" / "plots" / "metrics" / "eval" / "bound.tsv").read_text().splitlines()[1:]]
    assert (summary["epochs_run"], summary["stopped_by"], summary["best_epoch"]) == (3, "cap", 3)
    assert summary["best_val_bound"] == pytest.approx(bounds[-1], abs=1e-4)


def test_a_posterior_collapse_is_said_on_the_epoch_lines_the_last_line_and_the_summary(
        tmp_path, digits, monkeypatch, capsys):
    """With the KL weighted 100 times, the best q(z|x) is p(z) whatever x: within a few epochs no
    unit is active and the KL is about zero; from the third such epoch the epoch line says so, as
    do the last line and dvclive's summary (a healthy run's says nothing: the `trained` test)."""
    summary = _train_tiny(tmp_path, digits, monkeypatch, objective={"kind": "elbo", "kl_weight": 100.0},
                          training={"epochs": 8, "learning_rate": 0.01})
    lines = capsys.readouterr().out.splitlines()
    assert summary["eval"]["active_units"] == 0 and summary["posterior_collapse"].startswith(
        "posterior collapse: 0 of 2 units active, validation KL 0.0")
    assert any(line.startswith("epoch ") and "; posterior collapse: 0 of 2 units active" in line and
               "for 3 epochs (the decoder ignores z)" in line for line in lines)
    assert lines[-1].endswith(summary["posterior_collapse"])
