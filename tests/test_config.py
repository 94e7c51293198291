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


def test_repository_params_define_the_iwae_and_the_k_study(request):
    params = load_params(request.config.rootpath / REPO_PARAMS)
    iwae = params.experiment("iwae")
    assert (iwae.objective.name, iwae.objective.num_samples, iwae.objective.gradient_estimator) == ("iwae", 50, "dreg")
    assert params.experiment("vae").objective.gradient_estimator == "reparameterized"
    assert params.k_study.experiment == "iwae" and params.k_study.num_samples == (1, 5, 10, 50)
    run = params.run("k_study/k5")
    assert run.objective.num_samples == 5 and run.model_copy(update={"objective": iwae.objective}) == iwae


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("objective: {name: elbo, gradient: dreg}", "objective: gradient 'dreg' applies to the iwae objective"),
        ("objective: {name: iwea}", "objective.name: Input should be 'elbo', 'iwae' or 'avb'"),
        ("objective: {num_samples: 0}", "objective.num_samples: Input should be greater than or equal to 1"),
        ("k_study: {experiment: nope, num_samples: [1]}", "k_study: experiment: no experiment named 'nope'"),
        ("k_study: {experiment: vae, num_samples: [5, 5]}", "k_study.num_samples: needs distinct values >= 1"),
        ("experiments: {vae: {objective: {name: iwae, gradient: stl}}}", "experiments.vae: objective.gradient"),
        ("experiments: {vae: {objective: {name: iwae}, training: {kl_warmup_epochs: 5}}}",
         "training.kl_weight / kl_warmup_epochs: apply to the elbo objective only"),
        ("model: {posterior: implicit}", "model.posterior / objective.name: an implicit posterior has no density"),
        ("experiments: {a: {objective: {name: avb}}}", "experiments.a: model.posterior / objective.name: .* got posterior "
                                                       "'gaussian' with objective 'avb'"),
        ("model: {posterior: implicit}\nobjective: {name: avb, gradient: dreg}", "objective.gradient: applies to elbo / iwae"),
        ("avb: {discriminator_units: [8, 0]}", "avb.discriminator_units: every layer needs at least 1 unit"),
        ("avb: {moment_samples: 1}", "avb.moment_samples: Input should be greater than or equal to 2"),
        ("avb: {discriminator_steps: 0}", "avb.discriminator_steps: Input should be greater than or equal to 1"),
        ("evaluation: {ais: {num_chains: 0}}", "evaluation.ais.num_chains: Input should be greater than or equal to 1"),
        ("evaluation: {ais: {num_step: 10}}", "evaluation.ais.num_step: unknown key; allowed keys here: "
                                              "\\['num_chains', 'num_steps', 'leapfrog_steps', 'step_size'\\]"),
    ],
)
def test_bad_objective_or_k_study_names_the_key(tmp_path, text, message):
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_params(write(tmp_path, text + "\n"))


def test_repository_params_define_avb_with_ais_for_every_experiment(request):
    params = load_params(request.config.rootpath / REPO_PARAMS)
    avb = params.experiment("avb")
    assert (avb.model.posterior, avb.objective.name, avb.avb.adaptive_contrast) == ("implicit", "avb", True)
    assert all(params.experiment(name).evaluation.ais is not None for name in params.experiments)
    assert params.experiment("vae").model.posterior == "gaussian"


def test_ais_can_be_turned_off(tmp_path):
    assert load_params(write(tmp_path, "evaluation: {ais: null}\n")).experiment("vae").evaluation.ais is None


def test_k_study_runs_must_be_listed(tmp_path):
    params = load_params(write(tmp_path, "k_study: {experiment: vae, num_samples: [1, 5]}\n"))
    with pytest.raises(ParamsError, match=r"k_study.num_samples: 7 is not one of \[1, 5\]"):
        params.run("k_study/k7")
    with pytest.raises(ParamsError, match="no experiment named 'k_study/x'"):
        params.run("k_study/x")
