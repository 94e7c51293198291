"""The posteriors' params, one class per kind, read without TensorFlow (`resolve` validates with them).

Each kind's layer is a module beside this one. What a kind offers the other parts is declared on
its class, so that `vae_tf.config.schema.Params` refuses a combination that cannot work before
anything is built.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field

from vae_tf.sections import Kinds, PartParams, Units


class PosteriorParams(PartParams):
    """A posterior's params. What its kind offers the other parts is declared here, beside its
    fields, so that a combination that cannot work is refused when params are read
    (`vae_tf.config.schema.Params`), before anything is built:
    - `density`: what its draws know of log q(z|x): "exact", "bound" (an estimate whose
      expectation bounds it from above) or None (samples only);
    - `supports_dreg`: log q as a function of z with q's parameters held fixed (DReG);
    - `gaussian_proposal`: its proposal is a diagonal Gaussian (refinement refines it)."""

    density: ClassVar[Optional[str]] = "exact"
    supports_dreg: ClassVar[bool] = True
    gaussian_proposal: ClassVar[bool] = False


KINDS = Kinds("model.posterior", "gaussian", PosteriorParams)


@KINDS.register
class GaussianPosteriorParams(PosteriorParams):
    """q(z|x) = N(mu(x), diag sigma(x)^2)."""

    kind: Literal["gaussian"] = "gaussian"
    gaussian_proposal: ClassVar[bool] = True


@KINDS.register
class ImplicitPosteriorParams(PosteriorParams):
    """z = g(x, eps), eps ~ N(0, I_noise_dim) fed into every layer: samples only, no density."""

    kind: Literal["implicit"] = "implicit"
    density: ClassVar[Optional[str]] = None
    noise_dim: int = Field(16, ge=1, le=4096)
    moment_samples: int = Field(32, ge=2, le=10000)  # draws for q's mean and scale (encode, adaptive contrast)


@KINDS.register
class NoiseBasisPosteriorParams(PosteriorParams):
    """z = z0(x) + sum_i a_i(x) * v_i(eps_i), v_i an MLP of its own noise: samples only, moments
    in closed form given the v_i's (the encoder for AVB's adaptive contrast)."""

    kind: Literal["noise_basis"] = "noise_basis"
    density: ClassVar[Optional[str]] = None
    noise_dim: int = Field(32, ge=1, le=4096)  # of each eps_i
    num_basis: int = Field(16, ge=1, le=1024)
    basis_units: Units = Field((128, 128, 128), min_length=1)  # each v_i's hidden layers
    moment_samples: int = Field(256, ge=2, le=100000)  # noise draws for the v_i's moments (shared by a batch)


@KINDS.register
class PlanarPosteriorParams(PosteriorParams):
    """A normalizing flow: num_steps planar steps f(z) = z + u tanh(w.z + b) on the Gaussian
    q(z_0|x), their u, w, b emitted by the encoder."""

    kind: Literal["planar"] = "planar"
    supports_dreg: ClassVar[bool] = False  # would need the parameters stopped inside the flow's networks
    num_steps: int = Field(4, ge=1, le=100)


@KINDS.register
class IAFPosteriorParams(PosteriorParams):
    """An inverse autoregressive flow: num_steps masked autoregressive steps (each a MADE with
    made_units hidden units) on the Gaussian q(z_0|x), conditioned on context_dim values of the encoder."""

    kind: Literal["iaf"] = "iaf"
    supports_dreg: ClassVar[bool] = False  # would need the parameters stopped inside the flow's networks
    num_steps: int = Field(2, ge=1, le=100)
    context_dim: int = Field(16, ge=1, le=4096)
    made_units: Units = Field((64, 64), min_length=1)


@KINDS.register
class HierarchicalPosteriorParams(PosteriorParams):
    """An auxiliary variable psi (auxiliary_dim values): psi ~ q(psi|x), z ~ q(z|x, psi), with a
    reverse model tau(psi|z, x); log q(z|x) is bounded by IWHVI with auxiliary_samples (K_tau)
    values of psi (1: the HVM bound), in training and in importance sampling."""

    kind: Literal["hierarchical"] = "hierarchical"
    density: ClassVar[Optional[str]] = "bound"
    supports_dreg: ClassVar[bool] = False
    auxiliary_dim: int = Field(16, ge=1, le=4096)
    auxiliary_samples: int = Field(8, ge=1, le=10000)
