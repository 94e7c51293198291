"""What train and evaluate would refuse, refused by `resolve` before DVC deletes any output.

DVC removes a stage's outputs before it runs the stage's command, so a refusal by train loses
the model trained before. Whatever params and the data's description (prepare's `meta.json`)
decide is therefore checked when the runs are resolved:

- the parts, built as training builds them (each kind's checks against the data in its
  `from_params`: the likelihood and the data's representation, image networks and images, the
  weights next to the data, a VampPrior's pseudo-inputs and the training images);
- memory a run would need at once, over this machine's: a lower bound, the decoder's outputs
  alone for one step's draws (B x K x D x k floats for a training step of batch B and K samples;
  B x min(chunk, K) for an importance-sampling chunk; B x chains for AIS), so nothing that fits
  is refused, and a setting that asks for hundreds of GiB is refused in seconds, not after hours
  of training;
- the ELBO surgery's draws (`vae_tf.evaluation.check_surgery_size`).
"""

from __future__ import annotations

import os

from vae_tf.config import Params
from vae_tf.data import Meta
from vae_tf.errors import ParamsError

FLOAT_BYTES = 4


def machine_memory() -> int:
    """This machine's physical memory, in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decoded_draws(params: Params) -> dict[str, tuple[int, str]]:
    """The draws one step decodes at once, by what runs it, with the settings that set them."""
    t, e = params.training, params.evaluation
    o = params.objective
    k = o.num_samples
    draws = {"a training step": (t.batch_size * o.draws_per_example, f"training.batch_size x {o.draws_setting}"),
             "importance sampling": (e.batch_size * min(e.chunk_size, max(e.num_samples, k)),
                                     "evaluation.batch_size x evaluation.chunk_size")}
    if e.ais is not None:
        draws["AIS"] = (e.batch_size * e.ais.num_chains, "evaluation.batch_size x evaluation.ais.num_chains")
    return draws


def refuse_what_cannot_run(params: Params, meta: Meta, memory: int) -> None:
    """Raises the `ParamsError` train or evaluate would raise for `params` on data `meta`, or for
    asking more than `memory` bytes (see the module's docstring)."""
    from vae_tf.evaluation import check_surgery_size
    from vae_tf.models.factory import build_parts

    likelihood = build_parts(params, meta)["likelihood"]
    outputs = meta.dimension * likelihood.values_per_pixel(meta.n_levels)
    for step, (draws, fields) in decoded_draws(params).items():
        needed = draws * outputs * FLOAT_BYTES
        if needed > memory:
            raise ParamsError(f"{fields}: {step} would decode {draws:,} draws at once; their outputs ({outputs:,} "
                              f"each) alone hold {needed / 2**30:,.1f} GiB, more than this machine's "
                              f"{memory / 2**30:,.1f} GiB; lower them")
    check_surgery_size(params.evaluation, meta.sizes["test"], params.model.latent_dim)
