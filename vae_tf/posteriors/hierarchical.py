"""The hierarchical posterior: an auxiliary variable psi makes q(z|x) a mixture with no closed-form
density, bounded by a reverse model tau (HVM, Ranganath et al. 2016; IWHVI, Sobolev & Vetrov 2019).

Shapes: h [batch, D]; psi [..., batch, A]; z [..., batch, L]; draws lead. The three networks see
x through one image trunk (`model.network` conv or resnet; x itself for mlp): f = trunk(h).
"""

from __future__ import annotations

import tensorflow as tf

from vae_tf.networks import apply_beside, features, features_width, gated, mlp, trunk
from vae_tf.objectives.bounds import iwae_bound
from vae_tf.posteriors.base import POSTERIORS, Draw, Posterior, Proposal
from vae_tf.posteriors.fitted import MOMENT_SAMPLES, fitted_gaussian, sample_moments
from vae_tf.posteriors.gaussian import diagonal_gaussian, gaussian_draw
from vae_tf.tfp import tfd, tfp


def iwhvi_log_density(log_q_z: tf.Tensor, log_q_psi: tf.Tensor, log_tau: tf.Tensor) -> tf.Tensor:
    """The IWHVI estimate of log q(z|x) from K_tau auxiliary values psi_k on the leading axis,
    psi_0 the draw that made z (psi_0 ~ q(psi|z, x)) and psi_1.. ~ tau(psi|z, x):

        log q^(z|x) = log (1/K_tau) sum_k q(z|x, psi_k) q(psi_k|x) / tau(psi_k|z, x).

    E[log q^] >= log q(z|x), falling towards it as K_tau grows, and equal to it when tau is
    q(psi|z, x); K_tau = 1 gives HVM's. 1/q^ is an unbiased estimate of 1/q(z|x) for every K_tau
    (the K_tau terms are exchangeable once psi_0's density q(psi|z,x) = q(z,psi|x)/q(z|x) is
    written out), so p(x, z)/q^ is one of p(x): importance sampling with it is consistent."""
    return iwae_bound(log_q_z + log_q_psi - log_tau)


@POSTERIORS.register("hierarchical")
class HierarchicalPosterior(Posterior):
    """psi ~ q(psi|x) = N(mu(x), diag sigma(x)^2) in A dimensions, z ~ q(z|x, psi) = N(mu(x, psi),
    diag sigma(x, psi)^2), so q(z|x) = int q(z|x, psi) q(psi|x) dpsi, a continuous mixture; a
    reverse model tau(psi|z, x) = N(mu(x, z), diag sigma(x, z)^2) is trained with it. Each is
    an MLP (the model's hidden units). A draw's log q is the IWHVI estimate with K_tau =
    `auxiliary_samples` (`iwhvi_log_density`): an upper bound in expectation, so the ELBO and
    L_K built on it are lower bounds (K_tau = 1: HVM's bound). Importance sampling of log p(x)
    weighs draws by p(x, z)/q^ (`AuxiliaryProposal`). No DReG (its params' `supports_dreg`)."""

    def __init__(self, auxiliary_dim: int, auxiliary_samples: int, **kwargs):
        super().__init__(**kwargs)
        self.auxiliary_dim, self.auxiliary_samples = auxiliary_dim, auxiliary_samples
        units, activation, gate = self.hidden_units, self.activation, gated(self.architecture)
        self.trunk = trunk(self.architecture, activation)
        self.auxiliary = mlp(units, 2 * auxiliary_dim, activation, "auxiliary_mlp", gate)  # h -> q(psi|x)
        self.network = mlp(units, 2 * self.latent_dim, activation, "encoder_mlp", gate)  # [h, psi] -> q(z|x,psi)
        self.reverse = mlp(units, 2 * auxiliary_dim, activation, "reverse_mlp", gate)  # [h, z] -> tau(psi|z,x)

    def build(self, input_shape):
        width = features_width(self.trunk, input_shape)
        self.auxiliary.build((None, width))
        self.network.build((None, width + self.auxiliary_dim))
        self.reverse.build((None, width + self.latent_dim))

    def conditional(self, f, psi) -> tfd.Distribution:
        """q(z|x, psi) for psi [..., batch, A], f = trunk(h): batch shape [..., batch]."""
        return diagonal_gaussian(apply_beside(self.network.layers, f, psi))

    def reverse_model(self, f, z) -> tfd.Distribution:
        """tau(psi|z, x) for z [..., batch, L], f = trunk(h): batch shape [..., batch]."""
        return diagonal_gaussian(apply_beside(self.reverse.layers, f, z))

    def joint_draw(self, f, num_samples: int, seed):
        """K draws (psi, z) ~ q(psi|x) q(z|x, psi), f = trunk(h): z [K, batch, L], psi [K, batch, A],
        q(psi|x), and log q(z|x, psi) at them [K, batch]."""
        psi_seed, z_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        q_psi = diagonal_gaussian(self.auxiliary(f))
        psi = gaussian_draw(q_psi, num_samples, psi_seed).z
        z = gaussian_draw(self.conditional(f, psi), 1, z_seed, batch_axis=2)
        return z.z[0], psi, q_psi, z.log_q[0]

    def _draw(self, h, num_samples, seed, stop_density_gradient, refine) -> Draw:
        return self.draw_from(features(self.trunk, h), num_samples, seed, self.auxiliary_samples)

    def draw_from(self, f, num_samples: int, seed, k_tau: int) -> Draw:
        """`draw` from the trunk's features f of x: z ~ q(z|x) and the IWHVI estimate of log q(z|x)
        with K_tau = `k_tau`: psi_0 the draw that made z, K_tau - 1 more from tau. Its auxiliary
        loss is tau's -log tau(psi_0|z, x): maximum likelihood towards q(psi|z, x), the optimal tau
        for HVM and IWHVI alike. Nothing else gets that loss's gradient (z, psi and the trunk's
        features held fixed), so an objective that does not use log q (avb) trains tau without
        changing what it does to q."""
        draw_seed, tau_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        z, psi, q_psi, log_q_z = self.joint_draw(f, num_samples, draw_seed)
        fixed_tau = self.reverse_model(tf.stop_gradient(f), tf.stop_gradient(z))
        auxiliary_loss = -fixed_tau.log_prob(tf.stop_gradient(psi))
        tau = self.reverse_model(f, z)
        if k_tau > 1:
            more = gaussian_draw(tau, k_tau - 1, tau_seed, batch_axis=2).z  # [K_tau - 1, K, batch, A] ~ tau
            log_q_z = tf.concat([log_q_z[tf.newaxis], self.conditional(f, more).log_prob(z)], axis=0)
            psi = tf.concat([psi[tf.newaxis], more], axis=0)
        else:
            log_q_z, psi = log_q_z[tf.newaxis], psi[tf.newaxis]
        return Draw(z, iwhvi_log_density(log_q_z, q_psi.log_prob(psi), tau.log_prob(psi)), None, auxiliary_loss)

    def sample_from(self, f, num_samples: int, seed) -> tf.Tensor:
        """The z of `draw_from` for that seed, without its estimate of log q (for the moments and
        proposals computed outside a compiled step, where nothing unused is pruned)."""
        return self.joint_draw(f, num_samples, tf.unstack(tf.random.experimental.stateless_split(seed, 2))[0])[0]

    def moments(self, h, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated from `MOMENT_SAMPLES` draws."""
        return sample_moments(self.sample_from(features(self.trunk, h), MOMENT_SAMPLES, seed))

    def proposal(self, h, seed, num_draws: int, scale: float) -> Proposal:
        """q(z|x) with the IWHVI estimate as its log-density at its own draws (`AuxiliaryProposal`),
        the trunk run once for all its draws; away from them, a Gaussian fitted to `num_draws`
        draws of q."""

        def stand_in():
            return fitted_gaussian(self.sample_from(features(self.trunk, h), num_draws, seed)), f"Gaussian fitted to {num_draws} draws of q(z|x)"

        return Proposal(AuxiliaryProposal(self, features(self.trunk, h), self.auxiliary_samples),
                        f"q(z, psi|x) with IWHVI's log q(z|x), K_tau={self.auxiliary_samples},",
                        lambda moment_seed: self.moments(h, moment_seed), stand_in)

class AuxiliaryProposal(tfd.Distribution):
    """A hierarchical q(z|x) as an importance-sampling proposal: `experimental_sample_and_log_prob`
    gives draws z and the IWHVI estimate log q^(z|x) at them, whose weights p(x, z)/q^ are
    unbiased for p(x) (`iwhvi_log_density`); so log mean_k w_k is a stochastic lower bound on
    log p(x), as with an exact density. There is no `log_prob` at other points (q(z|x) has no
    closed form): a diagnostic that needs one fits a Gaussian to its draws.
    Batch shape [batch], event shape [L]."""

    def __init__(self, posterior: HierarchicalPosterior, f, auxiliary_samples: int):
        """f: the posterior's trunk features of x [batch, F] (x itself for an MLP)."""
        parameters = dict(locals())
        self.posterior, self.f, self.auxiliary_samples = posterior, f, auxiliary_samples
        super().__init__(dtype=f.dtype, reparameterization_type=tfd.FULLY_REPARAMETERIZED, validate_args=False,
                         allow_nan_stats=True, parameters=parameters, name="AuxiliaryProposal")

    def _batch_shape(self):
        return tf.TensorShape(self.f.shape[:1])

    def _event_shape(self):
        return tf.TensorShape([self.posterior.latent_dim])

    def _sample_n(self, n, seed=None):
        return self.posterior.sample_from(self.f, n, tfp.random.sanitize_seed(seed))

    def _sample_and_log_prob(self, sample_shape, seed):
        n = tf.reduce_prod(sample_shape)
        draw = self.posterior.draw_from(self.f, n, tfp.random.sanitize_seed(seed), self.auxiliary_samples)
        return (tf.reshape(draw.z, tf.concat([sample_shape, tf.shape(draw.z)[1:]], 0)),
                tf.reshape(draw.log_q, tf.concat([sample_shape, tf.shape(draw.log_q)[1:]], 0)))
