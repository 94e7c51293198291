"""A stage's params rebuilt from its resolved file: what it declares, equal to the run's, and nothing else."""

import json
import os

import pytest

from vae_tf import stages
from vae_tf.config import load_params
from vae_tf.config.declared import STAGE_SETTINGS, UndeclaredSetting, load_declared
from vae_tf.data import prepare, save_prepared
from vae_tf.errors import ParamsError


@pytest.fixture(scope="module")
def resolved(request, tmp_path_factory):
    """The shipped params.yaml resolved, as the resolve stage writes it, on its prepared data."""
    folder = tmp_path_factory.mktemp("resolve")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        params_path = str(request.config.rootpath / "params.yaml")
        params = load_params(params_path)
        save_prepared(prepare(params.data, params.seed), folder / "prepared")
        stages.resolve("prepared", "resolved", params_path)
    finally:
        os.chdir(cwd)
    return folder / "resolved", load_params(request.config.rootpath / "params.yaml")


def value(params, key):
    for name in key.split("."):
        params = getattr(params, name)
    return params


def test_every_declared_setting_round_trips_through_its_resolved_file(resolved):
    folder, params = resolved
    assert json.loads((folder / stages.EXPERIMENTS).read_text()) == list(params.experiments)
    for run in params.runs():
        for stage, keys in STAGE_SETTINGS.items():
            declared = load_declared(folder / run / f"{stage}.json", stage)
            for key in keys:
                assert value(declared, key) == value(params.run(run), key), (run, stage, key)


@pytest.mark.parametrize(("stage", "key"), [("evaluate", "objective"), ("evaluate", "training.epochs"),
                                            ("evaluate", "model.posterior"), ("export", "seed"),
                                            ("train", "evaluation"), ("report", "evaluation")])
def test_a_setting_a_stage_does_not_declare_cannot_be_read(resolved, stage, key):
    folder, _ = resolved
    declared = load_declared(folder / "vae" / f"{stage}.json", stage)
    with pytest.raises(UndeclaredSetting, match=rf"^{key}: not among the settings in .*vae/{stage}.json"):
        value(declared, key)


def test_evaluation_decides_xla_from_its_own_file_as_training_did(resolved):
    """`uses_xla` reads training.jit_compile, training.distribute and model.network: evaluate
    declares them (it did not, and read params.yaml)."""
    from vae_tf.models import uses_xla

    folder, params = resolved
    for run in params.runs():
        assert uses_xla(load_declared(folder / run / "evaluate.json", "evaluate")) == uses_xla(params.run(run))


def test_a_missing_or_damaged_resolved_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(ParamsError, match=r"train.json: not found; `dvc repro` runs the resolve stage"):
        load_declared(tmp_path / "train.json", "train")
    (tmp_path / "train.json").write_text('{"seed": ')
    with pytest.raises(ParamsError, match=r"train.json: not valid JSON"):
        load_declared(tmp_path / "train.json", "train")
