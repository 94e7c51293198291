"""TFP bijectors that TFP lacks (no Keras state: their parameters are tensors of the call), and
the chain of masked autoregressive steps that the IAF posterior and the flow prior share.

`tfp.bijectors` has no planar flow (Rezende & Mohamed 2015), so it is here, as a
`tfb.Bijector`: `tfd.TransformedDistribution` then gives sampling and log-densities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_probability.python.internal import parameter_properties

from vae_tf.tfp import tfb

INVERTIBILITY_MARGIN = 1e-4  # w.u_hat >= -1 + this: log |det| >= log(1e-4) wherever z is
BISECTION_STEPS = 40  # halvings of an interval of width 2 |w.u_hat|: float32 precision for any |w.u_hat| < 1e5


class Planar(tfb.Bijector):
    """f(z) = z + u_hat tanh(w.z + b), on the last axis; u, w [..., L], b [...].

    u_hat = u + (m(w.u) - w.u) w / |w|^2 with m(a) = -1 + softplus(a) makes w.u_hat > -1, so f is
    invertible (Rezende & Mohamed 2015, appendix A); m is shifted up by `INVERTIBILITY_MARGIN`,
    since in float32 softplus(a) rounds to 0 for a < -17 and the Jacobian would be singular.
    log |det df/dz| = log |1 + u_hat . psi(z)|, psi(z) = (1 - tanh^2(w.z + b)) w.
    The inverse has no closed form: along w, y = f(z) gives a = w.z as the root of
    a + (w.u_hat) tanh(a + b) = w.y, increasing in a, inside [w.y - |w.u_hat|, w.y + |w.u_hat|]
    (|tanh| <= 1), found by bisection; then z = y - u_hat tanh(a + b).
    """

    def __init__(self, u, w, b, validate_args: bool = False, name: str = "planar"):
        parameters = dict(locals())
        with tf.name_scope(name):
            self.u, self.w, self.b = (tf.convert_to_tensor(t, dtype=tf.float32) for t in (u, w, b))
            wu = tf.reduce_sum(self.w * self.u, axis=-1, keepdims=True)
            self.u_hat = self.u + (tf.nn.softplus(wu) - 1.0 + INVERTIBILITY_MARGIN - wu) * self.w / tf.reduce_sum(
                tf.square(self.w), axis=-1, keepdims=True)
            self.w_u_hat = tf.reduce_sum(self.w * self.u_hat, axis=-1)  # > -1
            super().__init__(forward_min_event_ndims=1, validate_args=validate_args, parameters=parameters,
                             name=name)

    @classmethod
    def _parameter_properties(cls, dtype=None, num_classes=None):
        return dict(u=parameter_properties.ParameterProperties(event_ndims=1),
                    w=parameter_properties.ParameterProperties(event_ndims=1),
                    b=parameter_properties.ParameterProperties(event_ndims=0))

    def _pre_activation(self, z):
        return tf.reduce_sum(self.w * z, axis=-1) + self.b

    def _forward(self, z):
        return z + self.u_hat * tf.tanh(self._pre_activation(z))[..., None]

    def _forward_log_det_jacobian(self, z):
        slope = 1.0 - tf.square(tf.tanh(self._pre_activation(z)))
        return tf.math.log(tf.abs(1.0 + slope * self.w_u_hat))

    def _inverse(self, y):
        target = tf.reduce_sum(self.w * y, axis=-1)
        reach = tf.abs(self.w_u_hat) + tf.zeros_like(target)
        low, high = target - reach, target + reach

        def halve(_, bounds):
            low, high = bounds
            middle = (low + high) / 2
            below = middle + self.w_u_hat * tf.tanh(middle + self.b) < target
            return _ + 1, (tf.where(below, middle, low), tf.where(below, high, middle))

        # a bound on the iterations, so that XLA compiles the loop and its gradient (AIS from a
        # planar q differentiates log q at any z: without it, "XLA compilation requires a fixed
        # tensor list size")
        _, (low, high) = tf.while_loop(lambda i, _: i < BISECTION_STEPS, halve, (0, (low, high)),
                                       maximum_iterations=BISECTION_STEPS)
        a = (low + high) / 2
        return y - self.u_hat * tf.tanh(a + self.b)[..., None]

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(self._inverse(y))


def autoregressive_chain(steps: Sequence, latent_dim: int, context=None, invert: bool = False) -> tfb.Bijector:
    """g_T o R o ... o R o g_1, R reversing the order of z's components, g_t TFP's
    `MaskedAutoregressiveFlow` around the Keras network `steps[t]` ((z, context) -> (shift,
    log_scale), `vae_tf.networks.MaskedAutoregressive`):
        MAF, g_t^{-1}(y)_i = (y_i - m_t(y_<i)) exp(-s_t(y_<i)): a density in one pass per step,
        a draw in L;
    with `invert`, each g_t is `Invert(MAF)` (IAF): a draw in one pass, a density away from the
    draws in L."""
    reverse = tfb.Permute(np.arange(latent_dim)[::-1])
    bijectors = []
    for t, step in enumerate(steps):
        if t:
            bijectors.append(reverse)
        made = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=lambda z, step=step: step(z, context))
        bijectors.append(tfb.Invert(made) if invert else made)
    return tfb.Chain(bijectors[::-1])  # Chain applies its last bijector first
