"""Training steps that give the same update on one device and on several (`tf.distribute`).

Under a distribution strategy each replica sees a shard of the global minibatch. Two things
make its update add up to the one-device update:
- noise: every replica draws the noise of the *global* minibatch with the same seed and keeps
  its own rows (`replica_rows`), so replicas differ in their draws, and together draw exactly
  what one device would;
- scale: a replica's loss is its examples' weighted sum divided by the global weight
  (`global_sum`), as the strategy sums the replicas' gradients.
Without a strategy (one replica) both are the identity.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from vae_tf.tfp import random_algorithm


def replica_rows(draw: Callable[[int], tf.Tensor], batch_size, axis: int = 1) -> tf.Tensor:
    """`draw(n)` gives draws for n examples along `axis`; returns this replica's `batch_size`
    rows of the draws for the global minibatch (replicas x batch_size examples)."""
    context = tf.distribute.get_replica_context()
    replicas = context.num_replicas_in_sync if context is not None else 1
    if replicas == 1:
        return draw(batch_size)
    start = tf.cast(context.replica_id_in_sync_group, tf.int32) * batch_size
    return tf.gather(draw(replicas * batch_size), tf.range(start, start + batch_size), axis=axis)


def global_sum(value: tf.Tensor) -> tf.Tensor:
    """The sum of `value` over the replicas (itself with one)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def noise(sampler, shape: list, seed, batch_axis: int = 1) -> tf.Tensor:
    """Draws of `shape` (a list; the examples on `batch_axis`) from a stateless sampler,
    `tf.random.stateless_normal` or `stateless_uniform`, with `vae_tf.tfp.random_algorithm`."""

    def draw(n):
        full = list(shape)
        full[batch_axis] = n
        return sampler(full, seed=seed, alg=random_algorithm())

    return replica_rows(draw, shape[batch_axis], batch_axis)
