"""SavedModel export: named signatures a server (TF Serving, or `vae_tf` itself) can call.

Signatures (inputs -> outputs, D = data dimension, L = latent dimension):
- `encode`: x [B, D] -> mean, scale [B, L] of q(z|x) (for an implicit q: estimated from its
  draws, also returned as samples [B, n, L]; drawn with a fixed seed, so the same x gets the same
  answer);
- `decode`: z [B, L] -> the likelihood's parameters (logits, or loc and scale) and its mean;
- `sample`: num_samples [], seed [] -> x [n, D] drawn from p(z) p(x|z), and mean [n, D];
- `reconstruct`: x [B, D] -> mean [B, D] of p(x|z) at z = E_q[z|x];
- `log_likelihood`: x [B, D], num_samples [], seed [] -> log_likelihood [B], importance sampled
  with the model's proposal (q(z|x), or a Gaussian fitted to draws of an implicit q).
The first, `encode`, is also `serving_default`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from vae_tf.evaluation import importance_sampling


def _stateless(seed: tf.Tensor) -> tf.Tensor:
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])


def _checked(model, x: tf.Tensor) -> tf.Tensor:
    """x, after an assertion that it is data the model's p(x|z) is a density for (finite; grey
    levels: integers in [0, L-1]; binary: 0 or 1). A violation fails the call with
    InvalidArgumentError, which a server answers with 400."""
    valid, rule = tf.reduce_all(tf.math.is_finite(x)), "finite numbers"
    name, levels = model.decoder.likelihood_name, model.decoder.n_levels
    if name == "categorical":
        valid &= tf.reduce_all((x >= 0) & (x <= levels - 1) & (x == tf.round(x)))
        rule = f"grey levels, integers in [0, {levels - 1}]"
    elif name == "bernoulli":
        valid &= tf.reduce_all((x == 0) | (x == 1))
        rule = "binary, 0 or 1"
    with tf.control_dependencies([tf.debugging.Assert(valid, [f"x: values must be {rule}"])]):
        return tf.identity(x)


ENCODE_SEED = (0, 0)


def export_model(model, directory: Path, chunk_size: int, proposal_samples: int, proposal_scale: float) -> None:
    """Write `model`'s SavedModel to `directory` (a new folder)."""
    d, latent = model.data_dim, model.latent_dim
    x_spec = tf.TensorSpec([None, d], tf.float32, name="x")
    archive = keras.export.ExportArchive()
    archive.track(model)

    def encode(x):
        return model.encode(_checked(model, x), tf.constant(ENCODE_SEED))

    def decode(z):
        raw, likelihood = model.decoder(z), model.decoder.likelihood
        return {**likelihood.parameters(raw), "mean": likelihood.distribution(raw).mean()}

    def sample(num_samples, seed):
        seeds = tf.random.experimental.stateless_split(_stateless(seed), 2)
        z = model.prior().sample(num_samples, seed=seeds[0])
        p = model.likelihood(z)
        return {"x": p.sample(seed=seeds[1]), "mean": p.mean()}

    def reconstruct(x):
        return {"mean": model(_checked(model, x))}

    def log_likelihood(x, num_samples, seed):
        seeds = tf.random.experimental.stateless_split(_stateless(seed), 2)
        x = _checked(model, x)
        proposal = model.proposal(x, seeds[0], proposal_samples, proposal_scale)
        estimates = importance_sampling(x, lambda _: proposal, model.likelihood, model.prior(),
                                        num_samples, chunk_size, seeds[1])
        return {"log_likelihood": estimates["log_likelihood"]}

    archive.add_endpoint("encode", encode, input_signature=[x_spec])
    archive.add_endpoint("decode", decode, input_signature=[tf.TensorSpec([None, latent], tf.float32, name="z")])
    archive.add_endpoint("sample", sample, input_signature=[
        tf.TensorSpec([], tf.int32, name="num_samples"), tf.TensorSpec([], tf.int32, name="seed")])
    archive.add_endpoint("reconstruct", reconstruct, input_signature=[x_spec])
    archive.add_endpoint("log_likelihood", log_likelihood, input_signature=[
        x_spec, tf.TensorSpec([], tf.int32, name="num_samples"), tf.TensorSpec([], tf.int32, name="seed")])

    archive.write_out(str(directory), verbose=False)
