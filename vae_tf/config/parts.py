"""Params of the model's parts, keyed by kind: one params class per kind, registered by name.

A part section of `params.yaml` is `{kind: <name>, <that kind's fields>}`, or just the kind's
name for its defaults (`posterior: gaussian`). A new kind is one class here, decorated with its
part's registry; its layer registers under the same name (`vae_tf.registry`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, get_args

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

# A YAML list of integers, held as a tuple (params are frozen).
Ints = Annotated[tuple[int, ...], BeforeValidator(lambda value: tuple(value) if isinstance(value, list) else value)]


# Bounds on a network's hidden layers that keep the largest model within a few GiB (weights,
# gradients and Adam's two moments: 16 bytes a weight): 8192 units a layer, 16 layers, and 2^26
# weights between them (256 MiB; two layers of 8192). The layers next to the data are bounded
# where the data's size is known (`vae_tf.likelihoods.base.Likelihood.from_params`).
MAX_UNITS, MAX_LAYERS, MAX_HIDDEN_WEIGHTS = 8192, 16, 2**26


def _widths(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(units < 1 for units in value):
        raise ValueError(f"every layer needs at least 1 unit, got {list(value)}")
    if len(value) > MAX_LAYERS or max(value, default=0) > MAX_UNITS:
        raise ValueError(f"at most {MAX_LAYERS} layers of at most {MAX_UNITS} units, got {list(value)}")
    weights = sum(a * b for a, b in zip(value, value[1:]))
    if weights > MAX_HIDDEN_WEIGHTS:
        raise ValueError(f"{list(value)} hold {weights:,} weights between them, over the {MAX_HIDDEN_WEIGHTS:,} "
                         f"allowed ({MAX_HIDDEN_WEIGHTS * 4 // 2**20} MiB); narrow them")
    return value


# The widths of a network's hidden layers.
Units = Annotated[Ints, AfterValidator(_widths)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _whole_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A whole float (`batch_size: 64.0`) is its integer where an integer is expected: DVC
        compares params by value, so it sees 64.0 as the 64 the stages ran with."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, float) and value.is_integer() and int in (annotation, *get_args(annotation)):
            return int(value)
        return value


class PartParams(Section):
    """A part's params: its `kind` and that kind's own fields, its layer's settings."""

    kind: str

    @classmethod
    def setting_names(cls) -> list[str]:
        """The fields its layer takes (`vae_tf.registry.Part`): all but `kind`."""
        return [name for name in cls.model_fields if name != "kind"]

    def settings(self) -> dict[str, Any]:
        """Those fields' values, as plain data (a nested section as a mapping, a tuple as a list)."""
        return self.model_dump(mode="json", include=set(self.setting_names()))


# Keys that used to exist, and where they went: the message a user of an old params.yaml gets.
MOVED = {
    "avb": "the avb section moved into the parts: objective: {kind: avb, discriminator_units, "
           "discriminator_learning_rate, discriminator_steps, adaptive_contrast}; model.posterior: "
           "{kind: implicit, noise_dim, moment_samples}",
    "objective.name": "renamed: objective: {kind: elbo | iwae | avb, ...}",
    "model.noise_dim": "moved: model.posterior: {kind: implicit, noise_dim: ...}",
    "training.kl_weight": "moved: objective: {kind: elbo, kl_weight: ...}",
    "training.kl_warmup_epochs": "moved: objective: {kind: elbo, kl_warmup_epochs: ...}",
}


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the section that contains the (unknown) key at `loc`."""
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        # a section, or an Optional section (Optional[X] is Union[X, None])
        candidates = [field.annotation, *get_args(field.annotation)] if field else []
        sections = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not sections:
            return []
        model = sections[0]
    return list(model.model_fields)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def describe_errors(err: pydantic.ValidationError, model: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per error: the key (dotted, after `prefix`) and what is wrong with it."""
    problems = []
    for error in err.errors():
        key = ".".join(str(part) for part in error["loc"])
        path = f"{prefix}.{key}" if prefix and key else prefix or key
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = MOVED.get(path) or f"unknown key; allowed keys here: {allowed_keys(model, error['loc'])}"
        elif error["type"] != "value_error" and "input" in error:
            message += f" (got {error['input']!r})"
            if isinstance(error["input"], str) and is_number(error["input"]):
                message += "; a number in quotes is text: write it without them"
        problems.append(f"{key}: {message}" if key else message)
    return problems


class Kinds:
    """The params classes of one part, by kind, each a subclass of `base`. `parse` is the part's
    field validator: it takes a kind's name or a mapping with `kind`, and validates it with that
    kind's class."""

    def __init__(self, path: str, default: str, base: type[PartParams] = PartParams):
        self.path, self.default, self.base = path, default, base
        self.classes: dict[str, type[PartParams]] = {}

    def register(self, cls: type[PartParams]) -> type[PartParams]:
        if not issubclass(cls, self.base):
            raise TypeError(f"{cls.__name__}: a {self.path} kind's params class derives from {self.base.__name__}")
        self.classes[cls.model_fields["kind"].default] = cls
        return cls

    def parse(self, value: Any) -> PartParams:
        if isinstance(value, PartParams):
            return value
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict):
            raise ValueError(f"expected a kind's name or {{kind: <name>, ...}}, got {value!r}")
        kind = value.get("kind", self.default)
        if kind not in self.classes:
            raise ValueError(f"kind: unknown kind {kind!r}; registered kinds: {sorted(self.classes)}")
        cls = self.classes[kind]
        try:
            return cls.model_validate({**value, "kind": kind})
        except pydantic.ValidationError as err:
            raise ValueError("; ".join(describe_errors(err, cls, self.path))) from None


def part(kinds: Kinds) -> Any:
    """The type of a part field: validated by `kinds`, dumped with its kind's own fields."""
    return Annotated[pydantic.SerializeAsAny[PartParams], BeforeValidator(kinds.parse)]


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


class PriorParams(PartParams):
    """A prior's params; `uses_posterior`: p(z) is made of the posterior's density (VampPrior)."""

    uses_posterior: ClassVar[bool] = False


class ObjectiveParams(PartParams):
    """An objective's params; `needs_density`: it needs log q(z|x) at the draws."""

    needs_density: ClassVar[bool] = True
    num_samples: int = Field(1, ge=1, le=10000)  # K draws z_k ~ q(z|x) per example and step

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


POSTERIORS = Kinds("model.posterior", "gaussian", PosteriorParams)
PRIORS = Kinds("model.prior", "standard_normal", PriorParams)
LIKELIHOODS = Kinds("model.likelihood", "categorical")
OBJECTIVES = Kinds("objective", "elbo", ObjectiveParams)
NETWORKS = Kinds("model.network", "mlp")
PosteriorField, PriorField = part(POSTERIORS), part(PRIORS)
LikelihoodField, ObjectiveField, NetworkField = part(LIKELIHOODS), part(OBJECTIVES), part(NETWORKS)


# --- networks (what every part that sees x, and the decoder, is made of) ----------------


@NETWORKS.register
class MLPNetworkParams(PartParams):
    """Dense layers (model.hidden_units) on x as a row of its values."""

    kind: Literal["mlp"] = "mlp"


@NETWORKS.register
class ConvNetworkParams(PartParams):
    """x as an image: per entry of filters a convolution of stride 2 (kernel_size), then the dense
    layers (model.hidden_units); the decoder mirrors it with transposed convolutions."""

    kind: Literal["conv"] = "conv"
    filters: Units = Field((32, 64), min_length=1, max_length=8)
    kernel_size: int = Field(3, ge=1, le=15)


@NETWORKS.register
class ResNetNetworkParams(ConvNetworkParams):
    """As conv, each (transposed) convolution followed by blocks residual blocks."""

    kind: Literal["resnet"] = "resnet"
    blocks: int = Field(1, ge=1, le=32)


# --- posteriors q(z|x) -----------------------------------------------------------------


@POSTERIORS.register
class GaussianPosteriorParams(PosteriorParams):
    """q(z|x) = N(mu(x), diag sigma(x)^2)."""

    kind: Literal["gaussian"] = "gaussian"
    gaussian_proposal: ClassVar[bool] = True


@POSTERIORS.register
class ImplicitPosteriorParams(PosteriorParams):
    """z = g(x, eps), eps ~ N(0, I_noise_dim) fed into every layer: samples only, no density."""

    kind: Literal["implicit"] = "implicit"
    density: ClassVar[Optional[str]] = None
    noise_dim: int = Field(16, ge=1, le=4096)
    moment_samples: int = Field(32, ge=2, le=10000)  # draws for q's mean and scale (encode, adaptive contrast)


@POSTERIORS.register
class NoiseBasisPosteriorParams(PosteriorParams):
    """z = z0(x) + sum_i a_i(x) * v_i(eps_i), v_i an MLP of its own noise: samples only, moments
    in closed form given the v_i's (the encoder for AVB's adaptive contrast)."""

    kind: Literal["noise_basis"] = "noise_basis"
    density: ClassVar[Optional[str]] = None
    noise_dim: int = Field(32, ge=1, le=4096)  # of each eps_i
    num_basis: int = Field(16, ge=1, le=1024)
    basis_units: Units = Field((128, 128, 128), min_length=1)  # each v_i's hidden layers
    moment_samples: int = Field(256, ge=2, le=100000)  # noise draws for the v_i's moments (shared by a batch)


@POSTERIORS.register
class PlanarPosteriorParams(PosteriorParams):
    """A normalizing flow: num_steps planar steps f(z) = z + u tanh(w.z + b) on the Gaussian
    q(z_0|x), their u, w, b emitted by the encoder."""

    kind: Literal["planar"] = "planar"
    supports_dreg: ClassVar[bool] = False  # would need the parameters stopped inside the flow's networks
    num_steps: int = Field(4, ge=1, le=100)


@POSTERIORS.register
class IAFPosteriorParams(PosteriorParams):
    """An inverse autoregressive flow: num_steps masked autoregressive steps (each a MADE with
    made_units hidden units) on the Gaussian q(z_0|x), conditioned on context_dim values of the encoder."""

    kind: Literal["iaf"] = "iaf"
    supports_dreg: ClassVar[bool] = False  # would need the parameters stopped inside the flow's networks
    num_steps: int = Field(2, ge=1, le=100)
    context_dim: int = Field(16, ge=1, le=4096)
    made_units: Units = Field((64, 64), min_length=1)


@POSTERIORS.register
class HierarchicalPosteriorParams(PosteriorParams):
    """An auxiliary variable psi (auxiliary_dim values): psi ~ q(psi|x), z ~ q(z|x, psi), with a
    reverse model tau(psi|z, x); log q(z|x) is bounded by IWHVI with auxiliary_samples (K_tau)
    values of psi (1: the HVM bound), in training and in importance sampling."""

    kind: Literal["hierarchical"] = "hierarchical"
    density: ClassVar[Optional[str]] = "bound"
    supports_dreg: ClassVar[bool] = False
    auxiliary_dim: int = Field(16, ge=1, le=4096)
    auxiliary_samples: int = Field(8, ge=1, le=10000)


# --- priors p(z) -----------------------------------------------------------------------


@PRIORS.register
class StandardNormalPriorParams(PriorParams):
    """p(z) = N(0, I), fixed."""

    kind: Literal["standard_normal"] = "standard_normal"


@PRIORS.register
class MixturePriorParams(PriorParams):
    """A mixture of num_components diagonal Gaussians, weights, means and scales learnt."""

    kind: Literal["mixture"] = "mixture"
    num_components: int = Field(16, ge=1, le=10000)


@PRIORS.register
class VampPriorParams(PriorParams):
    """The VampPrior: the posterior averaged over num_components learnt pseudo-inputs, which
    start as training images (init: data) or uniform draws in [0, 1] (init: random)."""

    kind: Literal["vamp"] = "vamp"
    uses_posterior: ClassVar[bool] = True
    num_components: int = Field(16, ge=1, le=10000)
    init: Literal["data", "random"] = "data"


@PRIORS.register
class FlowPriorParams(PriorParams):
    """N(0, I) pushed through a masked autoregressive flow of num_steps steps (each a MADE with
    made_units hidden units), learnt."""

    kind: Literal["flow"] = "flow"
    num_steps: int = Field(2, ge=1, le=100)
    made_units: Units = Field((64, 64), min_length=1)


@PRIORS.register
class RingPriorParams(PriorParams):
    """A fixed mixture of num_components Gaussians (standard deviation scale) evenly spaced on a
    circle of the given radius in the first two latent dimensions; N(0, 1) in any others."""

    kind: Literal["ring"] = "ring"
    num_components: int = Field(8, ge=1, le=10000)
    radius: float = Field(2.0, gt=0.0, le=1e6)
    scale: float = Field(0.3, gt=0.0, le=1e6)


# --- likelihoods p(x|z) ----------------------------------------------------------------


@LIKELIHOODS.register
class CategoricalLikelihoodParams(PartParams):
    """Independent categoricals over each pixel's grey levels (data.preprocessing: levels)."""

    kind: Literal["categorical"] = "categorical"


@LIKELIHOODS.register
class BernoulliLikelihoodParams(PartParams):
    """Independent Bernoullis (data.preprocessing: binarize or dynamic_binarize)."""

    kind: Literal["bernoulli"] = "bernoulli"


@LIKELIHOODS.register
class GaussianLikelihoodParams(PartParams):
    """Independent Gaussians over intensities (data.preprocessing: scale)."""

    kind: Literal["gaussian"] = "gaussian"


# --- objectives ------------------------------------------------------------------------


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


@OBJECTIVES.register
class ELBOParams(BoundParams):
    """E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)), beta ramped up over kl_warmup_epochs."""

    kind: Literal["elbo"] = "elbo"
    kl_weight: float = Field(1.0, ge=0.0, le=1e6)
    kl_warmup_epochs: int = Field(0, ge=0, le=1_000_000)

    def describe(self) -> str:
        beta = f", beta {self.kl_weight:g}" if self.kl_weight != 1.0 else ""
        warmup = f", warm-up {self.kl_warmup_epochs} epochs" if self.kl_warmup_epochs else ""
        return f"{super().describe()} (reparameterized{beta}{warmup}{self.refined})"


@OBJECTIVES.register
class IWAEParams(BoundParams):
    """L_K = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)], reparameterized or DReG gradients."""

    kind: Literal["iwae"] = "iwae"
    gradient: Literal["reparameterized", "dreg"] = "dreg"

    @property
    def uses_dreg(self) -> bool:
        return self.gradient == "dreg"

    def describe(self) -> str:
        return f"{super().describe()} ({self.gradient}{self.refined})"


@OBJECTIVES.register
class AVBParams(ObjectiveParams):
    """Adversarial Variational Bayes: a discriminator T(x, z) estimates log q - log r."""

    kind: Literal["avb"] = "avb"
    needs_density: ClassVar[bool] = False
    discriminator_units: Units = Field((256, 256), min_length=1)
    discriminator_learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    discriminator_steps: int = Field(1, ge=1, le=100)
    adaptive_contrast: bool = True

    @property
    def adversary_learning_rate(self) -> Optional[float]:
        return self.discriminator_learning_rate

    def describe(self) -> str:
        contrast = "adaptive contrast" if self.adaptive_contrast else "contrast with p(z)"
        return f"{super().describe()} ({contrast}, {self.discriminator_steps} T step / update)"


@OBJECTIVES.register
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
