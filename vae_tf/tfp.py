"""TensorFlow Probability, imported once.

TFP 0.25 imports `tf_keras` at import time; its distributions work with Keras 3 models
(we never use `tfp.layers`, which are built on tf_keras).
"""

import tensorflow_probability as tfp

tfd = tfp.distributions

__all__ = ["tfp", "tfd"]
