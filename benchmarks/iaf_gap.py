"""Benchmark: why the IAF posterior does not narrow the gap log p(x) - ELBO on 28x28 images.

Trains the Gaussian posterior and IAF variants (more steps, wider MADEs, a wider context) on one
setting of a study (its params file and its prepared data), all with the same seed, data and
epochs, then on the first `--test-images` test images estimates log p(x) by importance sampling
(K = `--num-samples`, each model's own proposal) and the ELBO of that proposal from the same
draws: gap = log p(x) - ELBO = KL(q(z|x) || p(z|x)) as estimated. Each NLL is also paired with
the Gaussian's over the same images. Trained jointly, a richer q also changes the decoder, and with
it p(z|x) (Cremer et al. 2018, Inference Suboptimality); so each kind of encoder is also trained
anew, for the same epochs, on the Gaussian model's decoder held fixed: there p(x) is the same for
every row (the NLLs agree within their errors) and the gaps compare the posteriors alone.
Writes the table to docs/results/iaf_gap.md.

    cd studies/fashion_mnist && dvc repro prepare resolve && cd ../.. && \
        python benchmarks/iaf_gap.py --study studies/fashion_mnist --setting vp_standard --epochs 10
    python benchmarks/iaf_gap.py --setting cv_vae --decoder studies/fashion_mnist/models/cv_vae/model.keras \\
        --epochs 50 --name iaf_gap_converged   # on the converged VAE's decoder
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
# name -> the posterior section (the `iaf` fields not given keep their defaults: 2 steps, MADE 64-64, context 16)
VARIANTS = {
    "gaussian": {"kind": "gaussian"},
    "iaf": {"kind": "iaf"},
    "iaf-wide": {"kind": "iaf", "made_units": [320, 320]},
    "iaf-wide-context": {"kind": "iaf", "made_units": [320, 320], "context_dim": 64},
    "iaf-deep-wide": {"kind": "iaf", "num_steps": 8, "made_units": [320, 320]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "fashion_mnist")
    parser.add_argument("--setting", default="vp_standard", help="the study's experiment whose networks all share")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--refine-steps", type=int, default=0,
                        help="also the first model's q refined per image by this many gradient steps on its ELBO "
                             "(evaluation.refinement): the best q of its family, so the amortization gap shows")
    parser.add_argument("--refine-step-size", type=float, default=0.05)
    parser.add_argument("--decoder", type=Path, default=None,
                        help="a trained model (.keras) of the setting: its decoder, held fixed, for every encoder "
                             "(and its own q as the first row); the joint training is skipped")
    parser.add_argument("--warm-start", action="store_true",
                        help="with --decoder: each encoder starts from that model's trained q (its weights copied "
                             "where they fit; a flow starts as the identity), so a flow adds to a converged Gaussian")
    parser.add_argument("--patience", type=int, default=10**6,
                        help="on the fixed decoder: stop when the validation bound has not risen for this many epochs "
                             "(the best weights kept); --epochs is the cap")
    parser.add_argument("--name", default="iaf_gap", help="the table's file: docs/results/<name>.md")
    args = parser.parse_args()

    import keras

    from vae_tf.config import load_params
    from vae_tf.config.schema import Params, deep_merge
    from vae_tf.data import load_prepared
    from vae_tf.evaluation import evaluate_model
    from vae_tf.models import build_model, uses_xla
    from vae_tf.provenance import write_result
    from vae_tf.training import minibatches, train

    def warm_start(model, trained) -> None:
        """`model`'s encoder network from `trained`'s: every weight copied, the output layer's
        first 2L outputs (mu, sigma) too, and its further outputs (a flow's context) left as
        initialised. An IAF's steps start as the identity, but between each two it reverses z's
        components (`autoregressive_chain`): after an odd number of reversals its z_0's mu and sigma
        are copied in reverse order, so that q starts as `trained`'s q."""
        latent = model.latent_dim
        order = np.arange(latent)
        if model.posterior.kind == "iaf" and (model.posterior.num_steps - 1) % 2:
            order = order[::-1]
        columns = np.concatenate([order, latent + order])  # [mu, raw sigma] of z_0
        for new, old in zip(model.posterior.network.weights, trained.posterior.network.weights, strict=True):
            old, value = old.numpy(), new.numpy()
            if old.shape == value.shape:
                value = old
            else:  # the output layer: [..., 2L] into [..., 2L + extra]
                value[..., :2 * latent] = old[..., columns]
            new.assign(value)

    def encoder_on(decoder_model, params):
        """A new encoder of `params`' kind trained on `decoder_model`'s likelihood, held fixed (from
        its q with --warm-start), until early stopping on the validation bound (--patience)."""
        model = build_model(params, data.meta)
        model.likelihood.set_weights(decoder_model.likelihood.get_weights())
        model.likelihood.trainable = False
        if args.warm_start:
            warm_start(model, decoder_model)
        model.compile(optimizer=keras.optimizers.Adam(params.training.learning_rate), jit_compile=uses_xla(params))
        t = params.training
        batches, steps = minibatches(data.train, t.batch_size, t.steps_per_execution, seed=params.seed)
        validation, _ = minibatches(data.val, 1000, t.steps_per_execution, seed=None)
        stop = keras.callbacks.EarlyStopping(monitor="val_bound", mode="max", patience=args.patience,
                                             restore_best_weights=True)
        start = time.perf_counter()
        history = model.fit(batches, steps_per_epoch=steps, epochs=t.epochs, verbose=0, shuffle=False,
                            validation_data=validation, callbacks=[stop])
        epochs = len(history.history["loss"])
        trained = f"{epochs} epochs, best {stop.best_epoch + 1}"
        print(f"{params.model.posterior.kind}: {trained}, validation bound {stop.best:.2f}", flush=True)
        return model, (time.perf_counter() - start) / epochs, trained

    def row(name, model, params, seconds, section: str):
        """A row of the table; NLLs paired with the section's first row."""
        result = evaluate_model(model, x, params.evaluation, params.seed, jit_compile=uses_xla(params))
        m, log_p = result["metrics"], result["log_likelihood"]
        difference = references.setdefault(section, log_p) - log_p
        rows.append(f"| {name} | {m['nll']:.2f} ± {m['nll_stderr']:.2f} | {difference.mean():+.2f} ± "
                    f"{difference.std(ddof=1) / np.sqrt(len(difference)):.2f} | {-m['elbo']:.2f} | "
                    f"{-m['nll'] - m['elbo']:.2f} | {m['active_units']} / {m['latent_dim']} | "
                    f"{'–' if seconds is None else f'{seconds:.1f}'} |")
        print(rows[-1], flush=True)

    base = load_params(args.study / "params.yaml").experiment(args.setting).model_dump(mode="json")
    data = load_prepared(args.study / "data" / "prepared")
    x = data.test[:args.test_images]
    rows, references, decoder = [], {}, None
    variants = {name: Params.model_validate(deep_merge(base, {
        "model": {"posterior": VARIANTS[name]}, "training": {"epochs": args.epochs, "early_stopping_patience": 10**6},
        "evaluation": {"num_samples": args.num_samples, "ais": None, "surgery_examples": 100}}))
        for name in args.variants}
    if args.decoder is not None:  # a trained model's decoder, and its own q as the reference row
        decoder = keras.saving.load_model(args.decoder)
        row(f"{args.decoder}'s own q", decoder, variants[args.variants[0]], None, section="fixed")
    for name, params in variants.items() if args.decoder is None else ():  # trained jointly
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            history = train(params, data, Path(scratch) / "model.keras", Path(scratch) / "live", Path(scratch) / "backup")
            seconds = (time.perf_counter() - start) / len(history.history["loss"])
        decoder = decoder if decoder is not None else history.model  # the first variant's: the Gaussian's
        row(name, history.model, params, seconds, section="joint")
    for name, params in variants.items():  # a new encoder on the first variant's decoder, held fixed
        model, seconds, trained = encoder_on(decoder, params)
        row(f"{name}, on the {args.decoder or args.variants[0]}'s decoder ({trained})", model, params, seconds,
            section="fixed")
    if args.refine_steps:  # Cremer et al.'s optimal q of the family: the first model's q refined per image
        refined = Params.model_validate(deep_merge(variants[args.variants[0]].model_dump(mode="json"), {
            "evaluation": {"refinement": {"steps": args.refine_steps, "step_size": args.refine_step_size}}}))
        row(f"{args.variants[0]}, its own q refined per image ({args.refine_steps} steps)", decoder, refined, None,
            section="fixed")
    how = f"up to {args.epochs} epochs"
    if args.patience < args.epochs:
        how += f" (early stopping on the validation bound, patience {args.patience}, its best weights kept)"
    if args.warm_start:
        how += ", starting from that model's trained q (its weights copied; a flow's steps start as the identity)"
    command = shlex.join(["python", "benchmarks/iaf_gap.py", *sys.argv[1:]])
    write_result(args.name, command, "\n".join([
        f"Setting: `{args.setting}` of the study `{args.study.name}` "
        f"(its networks, data and seed), {args.epochs} epochs each; the first {len(x)} test images, log p(x) by "
        f"importance sampling with K = {args.num_samples} draws of each model's own q(z|x). The posteriors: "
        + "; ".join(f"{name} `{json.dumps(VARIANTS[name])}`" for name in args.variants) + ".",
        "",
        "Above: each trained with its decoder. Below: a new encoder of each kind trained for as many epochs on the "
        f"decoder of the {args.variants[0]} model above, held fixed (the same p(x) for every row)."
        if args.decoder is None else f"A new encoder of each kind trained for {how} on the decoder of "
        f"`{args.decoder}`, held fixed (the same p(x) for every row), after that model's own q.",
        "",
        "| posterior | NLL, IS | vs the first row of its part (paired) | -ELBO | gap | active units | s / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "gap = log p(x) - ELBO of the same draws: KL(q(z|x) || p(z|x)) as importance sampling measures it. "
        "s / epoch: training wall time over epochs (validation included above, none below), with whatever else ran "
        "on the machine.",
    ]))


if __name__ == "__main__":
    main()
