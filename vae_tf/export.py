"""SavedModel export: named signatures a server (TF Serving, or `vae_tf` itself) can call.

Signatures (inputs -> outputs, D = data dimension, L = latent dimension):
- `encode`: x [B, D] -> mean, scale [B, L] of q(z|x) (for an implicit q: estimated from its
  draws, also returned as samples [B, n, L]; drawn with a fixed seed, so the same x gets the same
  answer);
- `decode`: z [B, L] -> the likelihood's parameters (logits, or loc and scale) and its mean;
- `sample`: num_samples [], seed [] -> x [n, D] drawn from p(z) p(x|z), and mean [n, D];
- `reconstruct`: x [B, D] -> mean [B, D] of p(x|z) at z = E_q[z|x];
- `log_likelihood`: x [B, D], num_samples [], seed [] -> log_likelihood [B], importance sampled
  with the model's proposal (q(z|x), or a Gaussian fitted to draws of an implicit q), the draws
  taken `chunk_size` at a time, fewer where B rows would make a call hold over `CALL_FLOATS`
  decoder outputs.
The first, `encode`, is also `serving_default`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from vae_tf.evaluation import model_log_likelihood


def _stateless(seed: tf.Tensor) -> tf.Tensor:
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])


ENCODE_SEED = (0, 0)
CALL_FLOATS = 2**25  # decoder outputs (128 MiB) of one call of the exported log_likelihood, all rows together


def export_model(model, directory: Path, chunk_size: int, proposal_samples: int, proposal_scale: float) -> None:
    """Write `model`'s SavedModel to `directory` (a new folder)."""
    d, latent = model.data_dim, model.latent_dim
    x_spec = tf.TensorSpec([None, d], tf.float32, name="x")
    archive = keras.export.ExportArchive()
    archive.track(model)

    def encode(x):
        return model.encode(model.likelihood.check(x), tf.constant(ENCODE_SEED))

    def decode(z):
        raw, likelihood = model.likelihood(z), model.likelihood
        return {**likelihood.parameters_of(raw), "mean": likelihood.distribution_of(raw).mean()}

    def sample(num_samples, seed):
        seeds = tf.random.experimental.stateless_split(_stateless(seed), 2)
        z = model.prior_distribution().sample(num_samples, seed=seeds[0])
        p = model.likelihood.distribution(z)
        return {"x": p.sample(seed=seeds[1]), "mean": p.mean()}

    def reconstruct(x):
        return {"mean": model(model.likelihood.check(x))}

    # Draws per decoder call: at most `chunk_size`, and at most CALL_FLOATS decoder outputs for all
    # rows of the request at once, so that its memory does not grow with its rows.
    outputs_per_draw = d * model.likelihood.values_per_pixel(model.likelihood.n_levels)

    def log_likelihood(x, num_samples, seed):
        rows = tf.maximum(tf.shape(x, out_type=tf.int64)[0], 1)
        chunk = tf.cast(tf.clip_by_value(CALL_FLOATS // (rows * outputs_per_draw), 1, chunk_size), tf.int32)
        return {"log_likelihood": model_log_likelihood(model, model.likelihood.check(x), num_samples, chunk,
                                                       proposal_samples, proposal_scale, _stateless(seed))}

    archive.add_endpoint("encode", encode, input_signature=[x_spec])
    archive.add_endpoint("decode", decode, input_signature=[tf.TensorSpec([None, latent], tf.float32, name="z")])
    archive.add_endpoint("sample", sample, input_signature=[
        tf.TensorSpec([], tf.int32, name="num_samples"), tf.TensorSpec([], tf.int32, name="seed")])
    archive.add_endpoint("reconstruct", reconstruct, input_signature=[x_spec])
    archive.add_endpoint("log_likelihood", log_likelihood, input_signature=[
        x_spec, tf.TensorSpec([], tf.int32, name="num_samples"), tf.TensorSpec([], tf.int32, name="seed")])

    archive.write_out(str(directory), verbose=False)
