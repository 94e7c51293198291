"""TensorFlow Probability, imported once, and the two distributions we adjust.

TFP 0.25 imports `tf_keras` at import time; its distributions work with Keras 3 models
(we never use `tfp.layers`, which are built on tf_keras).
"""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

tfd = tfp.distributions
tfb = tfp.bijectors


def random_algorithm() -> str:
    """The stateless random-number algorithm for what is being traced: ThreeFry where XLA
    compiles it (a `tf.function(jit_compile=True)`, or a function inside one), Philox elsewhere.

    Every stateless draw of vae-tf names its algorithm, never `auto_select`. Measured under XLA
    on CPU (TF 2.21, 2 cores; `benchmarks/hot_loops.py`): 2.3 ns a uniform draw with ThreeFry,
    14 with Philox, 84 with `auto_select`; dynamic binarization of a 28x28 epoch draws 39
    million. TensorFlow's own CPU kernels have no ThreeFry, so outside XLA it is Philox. The two
    give different (equally valid) streams: a run with XLA and the same run without draw
    different noise. Which one is read from TensorFlow's XLA context (its only record of it).
    """
    return "threefry" if GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()) else "philox"


class Normal(tfd.Normal):
    """`tfd.Normal` whose draws name their random-number algorithm (`random_algorithm`).

    TFP draws with `tf.random.stateless_normal`'s default `alg="auto_select"`, the slowest under
    XLA. Sampling is the same reparameterization, z = loc + scale * eps; densities, KL
    divergences (registered for `tfd.Normal`) and everything else are TFP's own.
    """

    def _sample_n(self, n, seed=None):
        loc, scale = tf.convert_to_tensor(self.loc), tf.convert_to_tensor(self.scale)
        shape = tf.concat([[n], self._batch_shape_tensor(loc=loc, scale=scale)], axis=0)
        seed = tfp.random.sanitize_seed(seed)
        return tf.random.stateless_normal(shape, seed=seed, dtype=self.dtype, alg=random_algorithm()) * scale + loc


class BatchReshape(tfd.BatchReshape):
    """`tfd.BatchReshape` to a batch shape given whole (no -1), which also works where the reshaped
    distribution's batch shape is known only when run: TFP 0.25 compares that shape with () as a
    Python bool, which a traced function refuses (a minibatch of unknown size in `fit`, a request's
    rows in the export). Given whole, the new shape needs nothing of the old one."""

    def _calculate_new_shape(self):
        new_shape = self._batch_shape_unexpanded
        return new_shape, tf.reduce_prod(new_shape)


__all__ = ["tfp", "tfd", "tfb", "BatchReshape", "Normal", "random_algorithm"]
