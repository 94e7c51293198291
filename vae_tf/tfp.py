"""TensorFlow Probability, imported once, and the one distribution we adjust.

TFP 0.25 imports `tf_keras` at import time; its distributions work with Keras 3 models
(we never use `tfp.layers`, which are built on tf_keras).
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfb = tfp.bijectors


class Normal(tfd.Normal):
    """`tfd.Normal` whose draws name their random-number algorithm (Philox).

    TFP draws with `tf.random.stateless_normal`'s default `alg="auto_select"`, which XLA on CPU
    compiles to a generator measured 25 times slower than explicit Philox (280k draws: 120 ms
    against 4.8 ms). Sampling is the same reparameterization, z = loc + scale * eps; densities,
    KL divergences (registered for `tfd.Normal`) and everything else are TFP's own.
    """

    def _sample_n(self, n, seed=None):
        loc, scale = tf.convert_to_tensor(self.loc), tf.convert_to_tensor(self.scale)
        shape = tf.concat([[n], self._batch_shape_tensor(loc=loc, scale=scale)], axis=0)
        seed = tfp.random.sanitize_seed(seed)
        return tf.random.stateless_normal(shape, seed=seed, dtype=self.dtype, alg="philox") * scale + loc


__all__ = ["tfp", "tfd", "tfb", "Normal"]
