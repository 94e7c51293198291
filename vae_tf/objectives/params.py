"""The objectives' params, one class per kind, and refinement's, read without TensorFlow.

Each kind's layer is a module beside this one; semi-amortized refinement is `vae_tf.refinement`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field

from vae_tf.sections import Kinds, PartParams, Section, Units


class ObjectiveParams(PartParams):
    """An objective's params; `needs_density`: it needs log q(z|x) at the draws."""

    needs_density: ClassVar[bool] = True
    num_samples: int = Field(1, ge=1, le=10000)  # K draws z_k ~ q(z|x) per example and step
    draws_setting: ClassVar[str] = "objective.num_samples"  # what sets `draws_per_example`

    @property
    def draws_per_example(self) -> int:
        """The draws of q(z|x) each example takes in a training step."""
        return self.num_samples

    @property
    def uses_dreg(self) -> bool:
        """Its draws need log q with q's parameters held fixed (DReG)."""
        return False

    @property
    def adversary_learning_rate(self) -> Optional[float]:
        """The learning rate of the optimizer of the objective's own (adversary) variables."""
        return None

    def describe(self) -> str:
        return f"{self.kind} K={self.num_samples}"


KINDS = Kinds("objective", "elbo", ObjectiveParams)


class RefinementParams(Section):
    """Semi-amortized refinement of a Gaussian q(z|x): gradient steps on each image's ELBO
    (`vae_tf.refinement`), at evaluation (`evaluation.refinement`) or in training
    (`objective.refinement`, with `gradient`)."""

    steps: int = Field(20, ge=1, le=10**5)
    step_size: float = Field(0.05, gt=0.0, le=100.0)
    num_draws: int = Field(8, ge=1, le=10**5)  # draws per image and step for the ELBO's gradient
    max_gradient_norm: float = Field(5.0, gt=0.0)


class TrainingRefinementParams(RefinementParams):
    """In training: the steps' gradient (`vae_tf.refinement.refine`): through_steps (SA-VAE) or
    straight_through."""

    steps: int = Field(5, ge=1, le=10**5)
    gradient: Literal["through_steps", "straight_through"] = "through_steps"


class BoundParams(ObjectiveParams):
    """A bound on log p(x) of the model's draws; with `refinement`, of draws of q(z|x) refined by
    gradient steps first (semi-amortized: a diagonal Gaussian posterior only)."""

    refinement: Optional[TrainingRefinementParams] = None

    @property
    def refined(self) -> str:
        """How the draws are refined, for `describe` ("" if they are not)."""
        r = self.refinement
        return f", q refined by {r.steps} steps ({r.gradient})" if r else ""


@KINDS.register
class ELBOParams(BoundParams):
    """E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)), beta ramped up over kl_warmup_epochs."""

    kind: Literal["elbo"] = "elbo"
    kl_weight: float = Field(1.0, ge=0.0, le=1e6)
    kl_warmup_epochs: int = Field(0, ge=0, le=1_000_000)

    def describe(self) -> str:
        beta = f", beta {self.kl_weight:g}" if self.kl_weight != 1.0 else ""
        warmup = f", warm-up {self.kl_warmup_epochs} epochs" if self.kl_warmup_epochs else ""
        return f"{super().describe()} (reparameterized{beta}{warmup}{self.refined})"


@KINDS.register
class IWAEParams(BoundParams):
    """L_K = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)], reparameterized or DReG gradients, the
    weight of log p(z) - log q(z|x) ramped up over kl_warmup_epochs."""

    kind: Literal["iwae"] = "iwae"
    gradient: Literal["reparameterized", "dreg"] = "dreg"
    # the weight of log p(z) - log q(z|x) in each log w ramped up over these epochs (left out of the
    # resolved settings while 0, so runs resolved before it existed keep theirs)
    kl_warmup_epochs: int = Field(0, ge=0, le=1_000_000, exclude_if=lambda epochs: epochs == 0)

    @property
    def uses_dreg(self) -> bool:
        return self.gradient == "dreg"

    def describe(self) -> str:
        warmup = f", warm-up {self.kl_warmup_epochs} epochs" if self.kl_warmup_epochs else ""
        return f"{super().describe()} ({self.gradient}{warmup}{self.refined})"


class GroupedParams(BoundParams):
    """M groups of K draws: M K draws of q(z|x) per example and step."""

    num_groups: int = Field(1, ge=1, le=10000)  # M
    draws_setting: ClassVar[str] = "objective.num_groups x objective.num_samples"

    @property
    def draws_per_example(self) -> int:
        return self.num_groups * self.num_samples

    def describe(self) -> str:
        return f"{self.kind} M={self.num_groups} K={self.num_samples} (reparameterized{self.refined})"


@KINDS.register
class MIWAEParams(GroupedParams):
    """L_{M,K} = (1/M) sum_m log (1/K) sum_k w_{m,k}: M independent L_K averaged (Rainforth et al. 2018)."""

    kind: Literal["miwae"] = "miwae"


@KINDS.register
class PIWAEParams(GroupedParams):
    """The encoder climbs L_{M,K} (MIWAE's), the decoder and prior L_{MK} (IWAE's) of the same M K
    draws (Rainforth et al. 2018)."""

    kind: Literal["piwae"] = "piwae"


@KINDS.register
class CIWAEParams(BoundParams):
    """beta ELBO + (1 - beta) L_K of the same K draws (Rainforth et al. 2018)."""

    kind: Literal["ciwae"] = "ciwae"
    beta: float = Field(0.5, ge=0.0, le=1.0)

    def describe(self) -> str:
        return f"{super().describe()} (beta {self.beta:g}, reparameterized{self.refined})"


@KINDS.register
class AVBParams(ObjectiveParams):
    """Adversarial Variational Bayes: a discriminator T(x, z) estimates log q - log r."""

    kind: Literal["avb"] = "avb"
    needs_density: ClassVar[bool] = False
    discriminator_units: Units = Field((256, 256), min_length=1)
    discriminator_learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    discriminator_steps: int = Field(1, ge=1, le=100)
    adaptive_contrast: bool = True
    # the weight of the KL part (T's estimate) ramped up over these epochs (left out of the resolved
    # settings while 0, so runs resolved before it existed keep theirs)
    kl_warmup_epochs: int = Field(0, ge=0, le=1_000_000, exclude_if=lambda epochs: epochs == 0)

    @property
    def adversary_learning_rate(self) -> Optional[float]:
        return self.discriminator_learning_rate

    def describe(self) -> str:
        contrast = "adaptive contrast" if self.adaptive_contrast else "contrast with p(z)"
        warmup = f", warm-up {self.kl_warmup_epochs} epochs" if self.kl_warmup_epochs else ""
        return f"{super().describe()} ({contrast}, {self.discriminator_steps} T step / update{warmup})"


@KINDS.register
class AAEParams(ObjectiveParams):
    """The adversarial autoencoder: a discriminator D(z) tells the encoder's codes from prior
    draws; the encoder (and decoder) maximise reconstruction - adversarial_weight * D's generator loss."""

    kind: Literal["aae"] = "aae"
    needs_density: ClassVar[bool] = False
    discriminator_units: Units = Field((256, 256), min_length=1)
    discriminator_learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    discriminator_steps: int = Field(1, ge=1, le=100)
    adversarial_weight: float = Field(1.0, ge=0.0, le=1e6)

    @property
    def adversary_learning_rate(self) -> Optional[float]:
        return self.discriminator_learning_rate

    def describe(self) -> str:
        weight = f", weight {self.adversarial_weight:g}" if self.adversarial_weight != 1.0 else ""
        return f"{super().describe()} (D on z{weight}, {self.discriminator_steps} D step / update)"
