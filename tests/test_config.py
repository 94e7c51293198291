import pytest

from vae_tf.config import load_params
from vae_tf.errors import ParamsError

REPO_PARAMS = "params.yaml"


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_repository_params_are_valid_and_match_the_reference_vae(request):
    params = load_params(request.config.rootpath / REPO_PARAMS)
    vae = params.experiment("vae")
    assert vae.model.hidden_units == (256, 256) and vae.model.latent_dim == 16
    assert vae.model.likelihood == "categorical" and vae.training.optimizer == "adamax"
    assert vae.training.batch_size == 64 and vae.training.early_stopping_patience == 20
    assert vae.evaluation.num_samples == 5000


def test_experiment_overrides_are_deep_merged(tmp_path):
    params = load_params(write(tmp_path, "training: {epochs: 7}\nexperiments:\n  a: {training: {batch_size: 8}}\n  b: {}\n"))
    assert params.experiment("a").training.batch_size == 8
    assert params.experiment("a").training.epochs == 7
    assert params.experiment("b").training.batch_size == 64


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("trainig: {epochs: 3}", ["trainig", "allowed keys", "training"]),
        ("training: {epochs: many}", ["training.epochs", "valid integer", "many"]),
        ("training: {epochs: 0}", ["training.epochs", "greater than or equal to 1"]),
        ("training: {learning_rate: 1e-3}", ["training.learning_rate", "0.001"]),
        ("model: {likelihood: poisson}", ["model.likelihood", "'categorical', 'bernoulli' or 'gaussian'", "poisson"]),
        ("model: {hidden_units: [64, 0]}", ["model.hidden_units", "at least 1 unit"]),
        ("data: {source: 'mnist'}", ["data.source", "tfds:<name>"]),
        ("experiments: {vae: {training: {batch_size: -1}}}", ["experiments.vae", "training.batch_size"]),
        ("experiments: {vae: {modle: {}}}", ["experiments.vae", "modle", "unknown key"]),
        ("experiments: {}", ["experiments", "at least one"]),
        ("- a\n- b\n", ["expected a mapping"]),
        ("training: {epochs: [3", ["not valid YAML"]),
    ],
)
def test_bad_params_name_the_key_and_what_is_allowed(tmp_path, text, names):
    with pytest.raises(ParamsError) as err:
        load_params(write(tmp_path, text))
    for name in names:
        assert name in str(err.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_experiment(tmp_path):
    with pytest.raises(ParamsError, match="no experiment named 'iwae'"):
        load_params(write(tmp_path, "{}")).experiment("iwae")
