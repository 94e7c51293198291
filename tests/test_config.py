import os
import subprocess
import sys

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
    assert vae.model.likelihood.kind == "categorical" and vae.training.optimizer == "adamax"
    assert vae.training.batch_size == 64 and vae.training.early_stopping_patience == 20
    assert vae.evaluation.num_samples == 5000


def test_the_schema_defaults_are_the_shipped_params(request, tmp_path):
    """One place for defaults: an empty params file means what params.yaml's base says (the
    AIS chains and the chunk sizes used to differ: 16 against 8, 1000 against 250)."""
    shipped = load_params(request.config.rootpath / REPO_PARAMS).base()
    assert load_params(write(tmp_path, "{}")).base() == shipped


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
        ("training: {learning_rate: '1e-3'}", ["training.learning_rate", "'1e-3'", "a number in quotes is text"]),
        ("model: {likelihood: poisson}", ["model.likelihood: kind: unknown kind 'poisson'",
                                          "['bernoulli', 'categorical', 'gaussian']"]),
        ("model: {hidden_units: [64, 0]}", ["model.hidden_units", "at least 1 unit"]),
        # widths bounded so that the largest model stays within a few GiB: a MADE of 10^7 units
        # used to be killed by the kernel at 22.8 GB with no message
        ("model: {posterior: {kind: iaf, made_units: [10000000]}}",
         ["model.posterior: made_units: at most 16 layers of at most 8192 units, got [10000000]"]),
        ("model: {hidden_units: [8192, 8192, 8192]}",
         ["model.hidden_units", "[8192, 8192, 8192] hold 134,217,728 weights between them, over the 67,108,864 allowed"]),
        ("objective: {kind: aae, discriminator_units: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]}",
         ["objective: discriminator_units: at most 16 layers"]),
        ("data: {source: 'mnist'}", ["data.source", "tfds:<name>"]),
        ("experiments: {vae: {training: {batch_size: -1}}}", ["experiments.vae", "training.batch_size"]),
        ("experiments: {vae: {modle: {}}}", ["experiments.vae", "modle", "unknown key"]),
        ("experiments: {}", ["experiments", "at least one"]),
        ("experiments: {k_study: {}}", ["experiments: experiment name 'k_study' is the K study's"]),
        ("- a\n- b\n", ["expected a mapping"]),
        ("training: {epochs: [3", ["not valid YAML"]),
    ],
)
def test_bad_params_name_the_key_and_what_is_allowed(tmp_path, text, names):
    with pytest.raises(ParamsError) as err:
        load_params(write(tmp_path, text))
    for name in names:
        assert name in str(err.value)


def test_params_read_as_dvc_reads_them(tmp_path):
    """YAML 1.2, as DVC's ruamel.yaml: 1e-3 is a number (PyYAML read it as text, which the stages
    refused while DVC saw 0.001), and a key given twice is an error (PyYAML kept the last one)."""
    assert load_params(write(tmp_path, "training: {learning_rate: 1e-3}\n")).training.learning_rate == 0.001
    with pytest.raises(ParamsError, match='not valid YAML: .*found duplicate key "epochs"'):
        load_params(write(tmp_path, "training:\n  epochs: 3\n  epochs: 5\n"))


def test_whole_floats_are_the_integers_dvc_takes_them_for(tmp_path):
    """DVC compares params by value: batch_size 64.0 is 'up to date' against a run with 64, so the
    stages take it as 64; 64.5 stays refused."""
    params = load_params(write(tmp_path, "training: {batch_size: 64.0}\nevaluation: {ais: {num_examples: 5.0}}\n"))
    assert params.training.batch_size == 64 and type(params.training.batch_size) is int
    assert params.evaluation.ais.num_examples == 5
    with pytest.raises(ParamsError, match="training.batch_size: Input should be a valid integer"):
        load_params(write(tmp_path, "training: {batch_size: 64.5}\n"))


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_experiment(tmp_path):
    with pytest.raises(ParamsError, match="no experiment named 'iwae'"):
        load_params(write(tmp_path, "{}")).experiment("iwae")


def test_repository_params_define_the_iwae_and_the_k_study(request):
    params = load_params(request.config.rootpath / REPO_PARAMS)
    iwae = params.experiment("iwae")
    assert (iwae.objective.kind, iwae.objective.num_samples, iwae.objective.gradient) == ("iwae", 50, "dreg")
    assert iwae.objective.describe() == "iwae K=50 (dreg)"
    assert params.experiment("vae").objective.describe() == "elbo K=1 (reparameterized)"
    assert params.k_study.experiment == "iwae" and params.k_study.num_samples == (1, 5, 10)
    run = params.run("k_study/k5")
    assert run.objective.num_samples == 5 and run.model_copy(update={"objective": iwae.objective}) == iwae


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("objective: {kind: elbo, gradient: dreg}", "objective: gradient: unknown key; allowed keys here: "
                                                     "['kind', 'num_samples', 'refinement', 'kl_weight', 'kl_warmup_epochs']"),
        ("objective: {kind: iwea}", "objective: kind: unknown kind 'iwea'; registered kinds: ['aae', 'avb', 'ciwae', 'elbo', 'iwae', 'miwae', 'piwae']"),
        ("objective: {num_samples: 0}", "objective: num_samples: Input should be greater than or equal to 1"),
        ("k_study: {experiment: nope, num_samples: [1]}", "k_study: experiment: no experiment named 'nope'"),
        ("k_study: {experiment: vae, num_samples: [5, 5]}", "k_study.num_samples: needs distinct values >= 1"),
        ("k_study: {experiment: vae, num_samples: [1, 5]}", "k_study.num_samples: 1 is experiment 'vae''s own value "
                                                            "(objective.num_samples)"),
        ("k_study: {experiment: vae, num_samples: [2], sweep: model.posterior.auxiliary_samples}",
         "k_study.sweep: experiment 'vae' has no model.posterior.auxiliary_samples"),
        ("experiments: {vae: {objective: {kind: iwae, gradient: stl}}}", "experiments.vae: objective: gradient: Input "
                                                                          "should be 'reparameterized' or 'dreg'"),
        # the AAE's objective has no KL term to warm up (the ELBO's, IWAE's and AVB's have)
        ("experiments: {vae: {objective: {kind: aae, kl_warmup_epochs: 5}}}",
         "experiments.vae: objective: kl_warmup_epochs: unknown key; allowed keys here: ['kind', 'num_samples', "
         "'discriminator_units', 'discriminator_learning_rate', 'discriminator_steps', 'adversarial_weight']"),
        ("model: {posterior: {kind: gaussian, noise_dim: 3}}", "model.posterior: noise_dim: unknown key"),
        ("model: {posterior: [implicit]}", "model.posterior: expected a kind's name or {kind: <name>, ...}"),
        ("objective: {kind: avb, discriminator_units: [8, 0]}", "objective: discriminator_units: every layer needs at "
                                                                 "least 1 unit"),
        ("model: {posterior: {kind: implicit, moment_samples: 1}}", "model.posterior: moment_samples: Input should be "
                                                                     "greater than or equal to 2"),
        ("objective: {kind: avb, discriminator_steps: 0}", "objective: discriminator_steps: Input should be greater"),
        ("evaluation: {ais: {num_chains: 0}}", "evaluation.ais.num_chains: Input should be greater than or equal to 1"),
        # counts reach TensorFlow as 32-bit integers: 2^31 + 10 used to be evaluated as K = 10
        ("evaluation: {num_samples: 2147483658}", "evaluation.num_samples: Input should be less than or equal to "
                                                  "100000000"),
        ("evaluation: {ais: {num_steps: 4294967296}}", "evaluation.ais.num_steps: Input should be less than or equal"),
        ("training: {distribute: {strategy: multi_worker, devices: [/cpu:0]}}",
         "training.distribute: devices: only for strategy mirrored"),
        ("training: {distribute: {devices: [/cpu:0, /CPU:0]}}",
         "training.distribute.devices: each device at most once, got ['/cpu:0', '/CPU:0']"),
        ("training: {distribute: {strategy: multi_worker, timeout_seconds: 0}}",
         "training.distribute.timeout_seconds: Input should be greater than 0"),
        ("training: {distribute: {strategy: parameter_server}}", "training.distribute.strategy: Input should be "
                                                                 "'mirrored' or 'multi_worker'"),
        ("export: {chunk_size: 2147483648}", "export.chunk_size: Input should be less than or equal to 1000000"),
        ("training: {batch_size: 4294967296}", "training.batch_size: Input should be less than or equal to 1000000"),
        ("k_study: {experiment: vae, num_samples: [2, 2147483648]}",
         "k_study.num_samples (2147483648): objective: num_samples: Input should be less than or equal to 10000"),
        ("model: {posterior: hierarchical}\nk_study: {experiment: vae, num_samples: [8], "
         "sweep: model.posterior.auxiliary_samples}", "k_study.num_samples: 8 is experiment 'vae''s own value"),
        ("evaluation: {ais: {num_step: 10}}", "evaluation.ais.num_step: unknown key; allowed keys here: "
                                              "['start', 'num_chains', 'num_steps', 'leapfrog_steps', 'step_size', "
                                              "'num_examples']"),
        # every float must be finite: an infinite AIS step size used to run with acceptance 0
        ("evaluation: {ais: {step_size: .inf}}", "evaluation.ais.step_size: Input should be a finite number"),
        ("training: {learning_rate: .nan}", "training.learning_rate: Input should be a finite number"),
        ("objective: {kind: elbo, kl_weight: -.inf}", "objective: kl_weight: Input should be a finite number"),
        ("evaluation: {surgery_examples: 1}", "evaluation.surgery_examples: Input should be greater than or equal to 2"),
        ("data: {source: 'idx:'}", "data.source: must be 'digits', 'tfds:<name>', 'npz' or 'idx', got 'idx:'"),
        # the file's old place: in the source, where DVC's dependency could not follow it
        ("data: {source: 'idx:/data/mnist'}", "data.source: the file goes in data.path (which DVC tracks): write "
                                              "source: idx and path: /data/mnist"),
        ("data: {path: ''}", "data.path: String should have at least 1 character"),
        # parts that cannot work together, refused when params are read (by resolve, before DVC
        # removes any output), not once train or evaluate runs
        ("experiments: {a: {model: {posterior: implicit}}}",
         "experiments.a: model.posterior / objective.kind: the 'implicit' posterior has no density, which objective "
         "'elbo' needs (log q(z|x)); train it with an objective that needs none: ['aae', 'avb']"),
        ("experiments: {a: {model: {posterior: noise_basis}, objective: {kind: iwae}}}",
         "experiments.a: model.posterior / objective.kind: the 'noise_basis' posterior has no density"),
        ("model: {posterior: hierarchical, prior: vamp}",
         "model.prior / model.posterior: the 'vamp' prior is made of the posterior's density, which the "
         "'hierarchical' posterior does not have in closed form"),
        ("experiments: {a: {model: {posterior: iaf}, objective: {kind: iwae, num_samples: 5}}}",
         "experiments.a: objective.gradient: dreg needs log q(z|x) as a function of z"),
        ("experiments: {a: {model: {posterior: planar}, evaluation: {refinement: {steps: 3}}}}",
         "experiments.a: evaluation.refinement: refines a diagonal Gaussian q(z|x), which the 'planar' posterior does "
         "not have"),
        ("experiments: {a: {model: {posterior: iaf}, objective: {kind: elbo, refinement: {steps: 3}}}}",
         "experiments.a: objective.refinement: refines a diagonal Gaussian q(z|x), which the 'iaf' posterior"),
        # the spellings before parts were keyed by kind name the new one
        ("avb: {discriminator_steps: 2}", "avb: the avb section moved into the parts: objective: {kind: avb"),
        ("objective: {name: iwae}", "objective: name: renamed: objective: {kind: elbo | iwae | avb, ...}"),
        ("model: {noise_dim: 4}", "model.noise_dim: moved: model.posterior: {kind: implicit, noise_dim: ...}"),
        ("training: {kl_weight: 0.5}", "training.kl_weight: moved: objective: {kind: elbo, kl_weight: ...}"),
        ("experiments: {a: {training: {kl_warmup_epochs: 3}}}",
         "experiments.a: training.kl_warmup_epochs: moved: objective: {kind: elbo, kl_warmup_epochs: ...}"),
    ],
)
def test_bad_part_params_name_the_key_and_old_spellings_the_new_one(tmp_path, text, message):
    with pytest.raises(ParamsError) as err:
        load_params(write(tmp_path, text + "\n"))
    assert message in str(err.value)


def test_an_experiment_that_changes_a_kind_starts_from_that_kinds_defaults(tmp_path):
    params = load_params(write(tmp_path, "objective: {kind: elbo, kl_weight: 0.5, num_samples: 3}\n"
                                         "model: {posterior: {kind: iaf, num_steps: 4}}\n"
                                         "experiments:\n  a: {objective: {kind: iwae, gradient: reparameterized}, "
                                         "model: {posterior: iaf}}\n"
                                         "  b: {objective: {num_samples: 7}}\n  c: {model: {posterior: gaussian}}\n"))
    a = params.experiment("a")
    assert a.objective.model_dump() == {"kind": "iwae", "num_samples": 1, "refinement": None,
                                        "gradient": "reparameterized"}  # nothing of elbo's
    assert a.model.posterior.num_steps == 4  # the same kind, by name: the base's fields stay
    b = params.experiment("b").objective
    assert (b.kind, b.kl_weight, b.num_samples) == ("elbo", 0.5, 7)  # the same kind: merged
    assert params.experiment("c").model.posterior.model_dump() == {"kind": "gaussian"}


def test_repository_params_define_avb_with_ais_for_every_experiment(request):
    params = load_params(request.config.rootpath / REPO_PARAMS)
    avb = params.experiment("avb")
    assert (avb.model.posterior.kind, avb.objective.kind, avb.objective.adaptive_contrast) == ("implicit", "avb", True)
    assert avb.objective.describe() == "avb K=1 (adaptive contrast, 5 T step / update)"
    assert all(params.experiment(name).evaluation.ais is not None for name in params.experiments)
    assert params.experiment("vae").model.posterior.kind == "gaussian"


def test_ais_can_be_turned_off(tmp_path):
    assert load_params(write(tmp_path, "evaluation: {ais: null}\n")).experiment("vae").evaluation.ais is None


def test_the_k_study_sweeps_k_tau_of_a_hierarchical_posterior(tmp_path):
    params = load_params(write(tmp_path, "experiments: {vae: {}, iwhvi: {model: {posterior: hierarchical}}}\n"
                                         "k_study: {experiment: iwhvi, num_samples: [1, 32], "
                                         "sweep: model.posterior.auxiliary_samples}\n"))
    run, own = params.run("k_study/k32"), params.experiment("iwhvi")
    assert run.model.posterior.auxiliary_samples == 32 and own.model.posterior.auxiliary_samples == 8
    assert run.model_copy(update={"model": own.model}) == own  # nothing else differs
    assert params.runs() == ["vae", "iwhvi", "k_study/k1", "k_study/k32"]


def test_k_study_runs_must_be_listed(tmp_path):
    params = load_params(write(tmp_path, "k_study: {experiment: vae, num_samples: [2, 5]}\n"))
    with pytest.raises(ParamsError, match=r"k_study.num_samples: 7 is not one of \[2, 5\]"):
        params.run("k_study/k7")
    with pytest.raises(ParamsError, match="no experiment named 'k_study/x'"):
        params.run("k_study/x")


def test_params_and_the_resolve_stage_read_without_tensorflow(request):
    """Every part's params module, the schema and the stages' module load, and params.yaml
    validates, without importing TensorFlow (so that a bad key is refused at once; `resolve`
    then builds the parts, `vae_tf.preflight`); the layers load when a part's package is first
    asked for one, with every kind registered."""
    script = """
import sys
import vae_tf.stages
from vae_tf.config import load_params
from vae_tf.posteriors import params
load_params('params.yaml').experiment('iaf')
assert not {'tensorflow', 'keras', 'tensorflow_probability'} & set(sys.modules), sorted(sys.modules)
from vae_tf.posteriors import POSTERIORS
assert 'tensorflow' in sys.modules
assert sorted(POSTERIORS.classes) == sorted(params.KINDS.classes), (POSTERIORS.classes, params.KINDS.classes)
"""
    subprocess.run([sys.executable, "-c", script], cwd=request.config.rootpath, check=True,
                   env={**os.environ, "PYTHONPATH": str(request.config.rootpath)})


@pytest.mark.parametrize(("text", "key", "becomes"), [
    ("evaluation: {ais: {step_size: 1.0e300}}", "evaluation.ais.step_size", "inf"),
    ("evaluation: {ais: {step_size: 1.0e-300}}", "evaluation.ais.step_size", "0"),
    ("training: {learning_rate: 1.0e-300}", "training.learning_rate", "0"),
    ("experiments: {vae: {model: {prior: {kind: ring, scale: 1.0e-300}}}}", "model.prior: scale", "0"),
    ("evaluation: {refinement: {max_gradient_norm: 1.0e300}}", "evaluation.refinement.max_gradient_norm", "inf")])
def test_a_float_that_float32_cannot_hold_is_refused_naming_its_key(tmp_path, text, key, becomes):
    """float64 holds 1e300 and 1e-300; float32, which TensorFlow computes with, makes them inf and 0,
    which ran on silently to a meaningless result (an AIS acceptance of 0, nothing learnt)."""
    with pytest.raises(ParamsError, match=rf"{key}: 1e[+-]300 is not a float32 .* would compute with {becomes}$"):
        load_params(write(tmp_path, text + "\n"))
