"""What resolve refuses before DVC deletes a model: `vae_tf.preflight` on params and a data description."""

from pathlib import Path

import pytest

from vae_tf.config import Params, load_params
from vae_tf.data import Meta
from vae_tf.errors import ParamsError
from vae_tf.preflight import refuse_what_cannot_run

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
# Fashion-MNIST as the study prepares it (dynamic binarization, 10,000 images held out for validation).
FASHION = Meta(source="idx:/usr/share/datasets/fashion-mnist", preprocessing="dynamic_binarize", representation="binary",
               n_levels=2, image_shape=(28, 28, 1), dimension=784, dynamic_binarization=True,
               sizes={"train": 50000, "val": 10000, "test": 10000})
ROWS = Meta(**{**FASHION.__dict__, "image_shape": (784,)})
DIGITS = Meta(source="digits", preprocessing="levels", representation="levels", n_levels=17, image_shape=(8, 8, 1),
              dimension=64, dynamic_binarization=False, sizes={"train": 1000, "val": 350, "test": 447})


@pytest.mark.parametrize(("params_file", "meta"), [("params.yaml", DIGITS),
                                                   ("studies/fashion_mnist/params.yaml", FASHION)])
def test_every_shipped_run_passes_on_its_data_in_the_ci_machines_memory(params_file, meta):
    """No false refusal: every run of the default pipeline and of the study, on 24 GiB."""
    params = load_params(ROOT / params_file)
    for name in params.runs():
        refuse_what_cannot_run(params.run(name), meta, 24 * GIB)


def test_a_memory_refusal_is_the_decoders_outputs_of_one_step_against_the_memory_given():
    """B x K draws of D x k outputs in float32: 100 x 50 x 784 x 1 x 4 bytes for an IWAE step."""
    params = Params.model_validate({"objective": {"kind": "iwae", "num_samples": 50}, "training": {"batch_size": 100},
                                    "evaluation": {"batch_size": 1, "ais": None}, "model": {"likelihood": "bernoulli"}})
    needed = 100 * 50 * 784 * 4
    refuse_what_cannot_run(params, ROWS, needed)
    with pytest.raises(ParamsError, match=r"^training.batch_size x objective.num_samples: a training step would decode "
                                          r"5,000 draws at once; their outputs \(784 each\) alone hold 0.0 GiB, more "
                                          r"than this machine's 0.0 GiB; lower them$"):
        refuse_what_cannot_run(params, ROWS, needed - 1)


@pytest.mark.parametrize(("settings", "message"), [
    ({"model": {"network": {"kind": "conv"}, "likelihood": "bernoulli"}}, r"^model.network: 'conv' needs images"),
    ({"model": {"likelihood": "gaussian"}}, r"^model.likelihood: 'gaussian' needs continuous data"),
    ({"model": {"likelihood": "bernoulli", "prior": {"kind": "vamp", "num_components": 500}}},
     r"^model.prior.num_components: 500 distinct pseudo-inputs cannot start as the 100 training images"),
    # inside every width's bound, trained it was killed by the kernel at 23 GB
    ({"model": {"likelihood": "bernoulli", "latent_dim": 4096,
                "posterior": {"kind": "iaf", "made_units": [8192, 8192]}}},
     r"^model.posterior: 2 steps of MADEs \[8192, 8192\] on 4096 latents would hold 335,806,464 weights, over the "
     r"268,435,456 allowed \(1024 MiB\)"),
    ({"model": {"likelihood": "bernoulli", "prior": {"kind": "flow", "num_steps": 100, "made_units": [4096, 4096]}}},
     r"^model.prior: 100 steps of MADEs \[4096, 4096\] on 16 latents would hold"),
    ({"model": {"likelihood": "bernoulli"}, "evaluation": {"ais": {"num_chains": 100000}, "batch_size": 1000}},
     r"^evaluation.batch_size x evaluation.ais.num_chains: AIS would decode 100,000,000 draws"),
])
def test_what_train_or_evaluate_would_refuse_is_refused_naming_the_setting(settings, message):
    with pytest.raises(ParamsError, match=message):
        refuse_what_cannot_run(Params.model_validate(settings), Meta(**{**ROWS.__dict__, "sizes": {"train": 100, "test": 10}}),
                               24 * GIB)
