"""The implicit posteriors of Adversarial Variational Bayes: samplers with no density."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from vae_tf import replicas
from vae_tf.networks import dense_layers, encoder, features, features_width, gated, trunk
from vae_tf.posteriors.base import MIN_SCALE, POSTERIORS, Draw, Posterior, Proposal
from vae_tf.posteriors.fitted import fitted_gaussian, sample_moments
from vae_tf.tfp import random_algorithm


class Sampler(Posterior):
    """What the implicit kinds share: q(z|x) known by its draws only, so it trains with an
    objective that needs no density (avb), and log p(x) is estimated with a Gaussian fitted to
    its draws (`proposal`) or by AIS; `moment_samples` draws for what needs its mean and scale."""

    def __init__(self, noise_dim: int, moment_samples: int, **kwargs):
        super().__init__(**kwargs)
        self.noise_dim, self.moment_samples = noise_dim, moment_samples

    def proposal(self, h, seed, num_draws: int, scale: float) -> Proposal:
        """A Gaussian (full covariance) fitted to `num_draws` draws of q(z|x) of each example, its
        standard deviations times `scale`; q's mean and scale from the same draws (not from
        `moment_samples` more)."""
        z = self.draw(h, num_draws, seed).z
        return Proposal(fitted_gaussian(z, scale), f"Gaussian fitted to {num_draws} draws of q(z|x), scale x{scale:g}",
                        lambda _: sample_moments(z))

    def encode(self, h, seed) -> dict[str, tf.Tensor]:
        """`moment_samples` draws of q(z|x), samples [batch, n, L], and their mean and scale."""
        z = self.draw(h, self.moment_samples, seed).z
        mean, scale = sample_moments(z)
        return {"mean": mean, "scale": scale, "samples": tf.transpose(z, [1, 0, 2])}


@POSTERIORS.register("implicit")
class ImplicitPosterior(Sampler):
    """z = g(x, eps), eps ~ N(0, I_noise_dim), a network with the noise fed into every layer
    (h_1 = a(W_1 [f(x), eps]), ..., z = W_out [h_n, eps]; f the image trunk of `model.network`,
    the identity for mlp), so that q(z|x) can be any shape the network can make. Its mean and
    scale are estimated from `moment_samples` draws per example."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.trunk = trunk(self.architecture, self.activation)
        self.hidden = dense_layers(self.hidden_units, self.activation, gated(self.architecture))
        self.output_layer = keras.layers.Dense(self.latent_dim)

    def build(self, input_shape):
        width = features_width(self.trunk, input_shape)
        for layer in [*self.hidden, self.output_layer]:
            layer.build((None, width + self.noise_dim))
            width = layer.units

    def call(self, h, eps):
        """z [..., L] for features h [..., F] (`draw`) and eps [..., noise_dim] of the same leading shape."""
        for layer in [*self.hidden, self.output_layer]:
            h = layer(tf.concat([h, eps], axis=-1))
        return h

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine) -> Draw:
        eps = replicas.noise(tf.random.stateless_normal, [num_samples, tf.shape(h)[0], self.noise_dim], seed)
        f = features(self.trunk, h)
        return Draw(self(tf.broadcast_to(f, tf.concat([[num_samples], tf.shape(f)], axis=0)), eps), None, None)

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated from `moment_samples` draws."""
        return sample_moments(self.draw(h, self.moment_samples, seed).z)


@POSTERIORS.register("noise_basis")
class NoiseBasisPosterior(Sampler):
    """The encoder Mescheder et al. (2017, appendix) pair with adaptive contrast:

        z = z0(x) + sum_i a_i(x) * v_i(eps_i),   eps_i ~ N(0, I_noise_dim), i = 1..num_basis,

    z0 and a_i = elu(. - 5) + 1 > 0 (starting near e^-5) from one network on x, v_i [L] an MLP
    (`basis_units`) of its own noise alone. No density, but cheap moments, the v_i being
    independent of x and of each other:

        E[z|x] = z0 + sum_i a_i E[v_i],   Var[z|x] = sum_i a_i^2 Var[v_i],

    E[v_i] and Var[v_i] estimated from `moment_samples` noise draws shared by the whole batch."""

    def __init__(self, num_basis: int, basis_units: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.num_basis, self.basis_units = num_basis, tuple(basis_units)
        self.network = encoder(self.architecture, self.hidden_units, (num_basis + 1) * self.latent_dim,
                               self.activation, name="encoder_mlp")
        self.basis = BasisNetworks(num_basis, (*basis_units, self.latent_dim), self.activation, name="basis")

    def build(self, input_shape):
        self.network.build(input_shape)
        self.basis.build((None, self.num_basis, self.noise_dim))

    def call(self, h):
        """z0 [batch, L] and a [batch, num_basis, L] for x."""
        out = tf.reshape(self.network(h), [-1, self.num_basis + 1, self.latent_dim])
        return out[:, 0], tf.nn.elu(out[:, 1:] - 5.0) + 1.0

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine) -> Draw:
        z0, a = self(h)
        eps = replicas.noise(tf.random.stateless_normal,
                             [num_samples, tf.shape(h)[0], self.num_basis, self.noise_dim], seed)
        return Draw(z0 + tf.reduce_sum(a * self.basis(eps), axis=-2), None, None)

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """From the basis' moments (class docstring); `seed` draws their `moment_samples` noises."""
        z0, a = self(h)
        eps = tf.random.stateless_normal([self.moment_samples, self.num_basis, self.noise_dim], seed,
                                         alg=random_algorithm())
        v_mean, v_scale = sample_moments(self.basis(eps)[:, None])  # [1, num_basis, L] each
        variance = tf.reduce_sum(tf.square(a * (v_scale - MIN_SCALE)), axis=-2)
        return z0 + tf.reduce_sum(a * v_mean, axis=-2), tf.sqrt(variance) + MIN_SCALE


@keras.saving.register_keras_serializable(package="vae_tf")
class BasisNetworks(keras.layers.Layer):
    """`num_basis` separate MLPs applied side by side: eps [..., num_basis, D] -> [..., num_basis,
    units[-1]], network i on eps[..., i, :] (hidden layers with `activation`, the last linear).
    Each weight tensor is [num_basis, in, out], Glorot-uniform per network."""

    def __init__(self, num_basis: int, units: Sequence[int], activation: str, **kwargs):
        super().__init__(**kwargs)
        self.num_basis, self.units, self.activation = num_basis, tuple(units), activation

    def build(self, input_shape):
        width, self.kernels, self.biases = input_shape[-1], [], []
        # Keras counts the leading num_basis axis into both fans: scale by it to get each network's Glorot
        glorot = keras.initializers.VarianceScaling(self.num_basis, "fan_avg", "uniform")
        for i, units in enumerate(self.units):
            self.kernels.append(self.add_weight((self.num_basis, width, units), glorot, name=f"kernel_{i}"))
            self.biases.append(self.add_weight((self.num_basis, units), "zeros", name=f"bias_{i}"))
            width = units

    def call(self, eps):
        h, act = eps, keras.activations.get(self.activation)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            h = tf.einsum("...ni,nio->...no", h, kernel) + bias
            h = act(h) if i < len(self.units) - 1 else h
        return h

    def get_config(self):
        return {**super().get_config(), "num_basis": self.num_basis, "units": list(self.units),
                "activation": self.activation}
