"""Sections of params.yaml, experiments merged onto the base, and loading with one-line errors."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar

import pydantic
from ruamel.yaml import YAML, YAMLError
from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from vae_tf.config import networks
from vae_tf.errors import ParamsError
from vae_tf.likelihoods import params as likelihoods
from vae_tf.objectives import params as objectives
from vae_tf.posteriors import params as posteriors
from vae_tf.priors import params as priors
from vae_tf.sections import Ints, Section, Units, describe_errors, part


# A part's section: a kind's name, or {kind: <name>, <its fields>}, validated by that kind's class.
NetworkField, PosteriorField, PriorField = part(networks.KINDS), part(posteriors.KINDS), part(priors.KINDS)
LikelihoodField, ObjectiveField = part(likelihoods.KINDS), part(objectives.KINDS)


class DataParams(Section):
    source: str = Field("digits", description="digits | tfds:<name> | npz | idx")
    path: str = Field("data/raw", min_length=1, description="npz: the .npz file, idx: the folder of IDX files; the "
                                                           "prepare stage's dependency (dvc.yaml: ${data.path})")
    preprocessing: Literal["levels", "binarize", "dynamic_binarize", "scale"] = "levels"
    binarize_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    validation_size: int = Field(10000, ge=1, le=10**9)
    tfds_data_dir: Optional[str] = None

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value in ("digits", "npz", "idx") or re.fullmatch(r"tfds:[\w/.:-]+", value):
            return value
        kind, colon, path = value.partition(":")
        if colon and path and kind in ("npz", "idx"):
            raise ValueError(f"the file goes in data.path (which DVC tracks): write source: {kind} and path: {path}")
        raise ValueError(f"must be 'digits', 'tfds:<name>', 'npz' or 'idx', got {value!r}")

    @property
    def name(self) -> str:
        """The data's name in meta.json and the reports: the source, with its path for npz and idx."""
        return f"{self.source}:{self.path}" if self.source in ("npz", "idx") else self.source


def as_tuple(value):
    """A YAML list as the tuple a field holds (anything else as it is, for the field to validate)."""
    return tuple(value) if isinstance(value, list) else value


Field_ = TypeVar("Field_")
Listed = Annotated[Field_, BeforeValidator(as_tuple)]  # a tuple field, given in YAML as a list


class UpperLayerParams(Section):
    """A stochastic layer z_l above z1 (`vae_tf.models.depth`): its size, the hidden units of its two
    networks, q(z_l|z_{l-1}) and p(z_{l-1}|z_l) (MLPs, gated where model.network is), and the kind of
    q(z_l|z_{l-1}), whose input is z_{l-1}."""

    latent_dim: int = Field(16, ge=1, le=4096)
    hidden_units: Units = Field((256, 256), min_length=1)
    posterior: PosteriorField = posteriors.GaussianPosteriorParams()


class ModelParams(Section):
    """The latent space, the networks' shape, and the parts (each `{kind: ..., its fields}`).
    `latent_dim`, `hidden_units` and `posterior` are z1's (the layer above x); `upper_layers`, the
    stochastic layers above it, bottom first (none: one layer), with `prior` over the top one."""

    latent_dim: int = Field(16, ge=1, le=4096)
    hidden_units: Units = Field((256, 256), min_length=1)
    activation: Literal["leaky_relu", "relu", "elu", "tanh", "softplus"] = "leaky_relu"
    network: NetworkField = networks.MLPNetworkParams()
    posterior: PosteriorField = posteriors.GaussianPosteriorParams()
    prior: PriorField = priors.StandardNormalPriorParams()
    likelihood: LikelihoodField = likelihoods.CategoricalLikelihoodParams()
    upper_layers: Listed[tuple[UpperLayerParams, ...]] = Field((), max_length=16, exclude_if=lambda layers: not layers)

    @model_validator(mode="after")
    def _layers_fit(self) -> "ModelParams":
        """What a stack can hold (`vae_tf.models.depth`): posteriors with a density in closed form,
        a top prior not made of the encoder."""
        if not self.upper_layers:
            return self
        for key, posterior in (("posterior", self.posterior),
                               *((f"upper_layers[{i}].posterior", layer.posterior)
                                 for i, layer in enumerate(self.upper_layers))):
            if posterior.density != "exact":
                exact = sorted(kind for kind, cls in posteriors.KINDS.classes.items() if cls.density == "exact")
                raise ValueError(f"{key}: with upper_layers each layer's q needs its density in closed form, which "
                                 f"the {posterior.kind!r} posterior does not have; use one of {exact}")
        if self.prior.uses_posterior:
            raise ValueError(f"prior: the {self.prior.kind!r} prior is made of the encoder of x, which the top layer's "
                             "q(z_L|z_{L-1}) is not; with upper_layers use a prior that is not (standard_normal, "
                             "mixture, flow)")
        return self


# Every integer has an upper bound: counts reach TensorFlow as 32-bit integers (an importance-sample
# count of 2^31 used to wrap around to a small one and be reported as asked); the bounds are far
# above what runs on any machine.


class DistributeParams(Section):
    """Training on several devices under `tf.distribute`: each minibatch split across the
    replicas, gradients summed.
    - `mirrored`: the devices of this machine (`tf.distribute.MirroredStrategy`); devices null:
      every visible GPU (the CPU if there is none).
    - `multi_worker`: several machines (`tf.distribute.MultiWorkerMirroredStrategy`), each
      process a worker on its own GPUs (or CPU), the cluster and this worker's place in it read
      from the `TF_CONFIG` environment variable (one worker without it; checked,
      `vae_tf.workers.cluster_config`), a worker ending after `timeout_seconds` if the cluster
      has not formed; devices must be null."""

    strategy: Literal["mirrored", "multi_worker"] = "mirrored"
    devices: Listed[Optional[tuple[str, ...]]] = Field(None, min_length=1)
    timeout_seconds: float = Field(300.0, gt=0.0, le=86400.0)  # multi_worker: the wait for every worker to answer

    @field_validator("devices")
    @classmethod
    def _distinct(cls, value):
        if value is not None and len({device.lower() for device in value}) < len(value):
            raise ValueError(f"each device at most once, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _devices_of_one_machine(self):
        if self.strategy == "multi_worker" and self.devices is not None:
            raise ValueError("devices: only for strategy mirrored (a multi_worker worker trains on all its "
                             "GPUs, or its CPU)")
        return self


class TrainingParams(Section):
    epochs: int = Field(1000, ge=1, le=10**7)
    batch_size: int = Field(64, ge=1, le=10**6)
    optimizer: Literal["adamax", "adam", "sgd", "rmsprop"] = "adamax"
    learning_rate: float = Field(1e-3, gt=0.0, le=10.0)
    schedule: Literal["constant", "burda"] = "constant"  # vae_tf.training.burda_rate
    early_stopping_patience: int = Field(20, ge=1, le=10**7)
    jit_compile: bool | Literal["auto"] = "auto"  # resolved by `vae_tf.models.uses_xla`
    steps_per_execution: int = Field(32, ge=1, le=10**5)
    checkpoint_every_epochs: int = Field(25, ge=1, le=10**7)
    distribute: Optional[DistributeParams] = None


class AISParams(Section):
    """Annealed importance sampling to p(z|x), HMC transitions, from the prior or from the
    importance-sampling proposal (q(z|x), or a Gaussian fitted to its draws where its density is
    not known anywhere: `start`)."""

    start: Literal["prior", "proposal"] = Field("prior", exclude_if=lambda start: start == "prior")
    num_chains: int = Field(8, ge=1, le=10**5)
    num_steps: int = Field(500, ge=1, le=10**7)
    leapfrog_steps: int = Field(1, ge=1, le=10**4)
    step_size: float = Field(0.1, gt=0.0)
    num_examples: Optional[int] = Field(None, ge=1, le=10**8)  # the first N test images (null: all of them)


class EvaluationParams(Section):
    num_samples: int = Field(5000, ge=1, le=10**8)
    chunk_size: int = Field(250, ge=1, le=10**6)
    batch_size: int = Field(64, ge=1, le=10**6)
    proposal_samples: int = Field(1000, ge=2, le=10**6)
    proposal_scale: float = Field(2.0, ge=1.0, le=100.0)
    ais: Optional[AISParams] = AISParams()
    refinement: Optional[objectives.RefinementParams] = None
    active_unit_threshold: float = Field(0.01, gt=0.0)
    surgery_samples: int = Field(16, ge=1, le=10**4)  # draws per image for the ELBO surgery (aggregated posterior)
    surgery_examples: int = Field(1000, ge=2, le=10**6)  # images whose aggregated posterior it takes (a subset past this)
    num_plot_images: int = Field(16, ge=1, le=256)


class ExportParams(Section):
    version: int = Field(1, ge=1, lt=2**31)
    chunk_size: int = Field(250, ge=1, le=10**6)


class Params(Section):
    """One fully resolved configuration: what a train/evaluate/export stage runs with. Its
    defaults are the shipped params.yaml's base (tests/test_config.py compares them), so a
    partial params file means what params.yaml says. Its parts
    must fit together (`_parts_fit`), by what each kind's params class declares it offers, so
    that `resolve` refuses what could only fail once train or evaluate runs."""

    seed: int = Field(0, ge=0, lt=2**31)
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    objective: ObjectiveField = objectives.ELBOParams()
    training: TrainingParams = TrainingParams()
    evaluation: EvaluationParams = EvaluationParams()
    export: ExportParams = ExportParams()

    @model_validator(mode="after")
    def _parts_fit(self) -> "Params":
        posterior, prior, objective = self.model.posterior, self.model.prior, self.objective
        if objective.needs_density and posterior.density is None:
            without = sorted(kind for kind, cls in objectives.KINDS.classes.items() if not cls.needs_density)
            raise ValueError(f"model.posterior / objective.kind: the {posterior.kind!r} posterior has no density, "
                             f"which objective {objective.kind!r} needs (log q(z|x)); train it with an objective "
                             f"that needs none: {without}")
        if prior.uses_posterior and posterior.density != "exact":
            raise ValueError(f"model.prior / model.posterior: the {prior.kind!r} prior is made of the posterior's "
                             f"density, which the {posterior.kind!r} posterior does not have in closed form")
        if self.model.upper_layers and not objective.needs_density:
            reading = sorted(kind for kind, cls in objectives.KINDS.classes.items() if cls.needs_density)
            raise ValueError(f"objective.kind: {objective.kind!r} has no form for model.upper_layers (it reads no "
                             f"log q); use one of {reading}")
        for layer in (posterior, *(layer.posterior for layer in self.model.upper_layers)):
            if objective.uses_dreg and not layer.supports_dreg:
                raise ValueError(f"objective.gradient: dreg needs log q(z|x) as a function of z with q's parameters "
                                 f"held fixed, which the {layer.kind!r} posterior does not give; set gradient: "
                                 "reparameterized")
        for key, refinement in (("objective", getattr(objective, "refinement", None)),
                                ("evaluation", self.evaluation.refinement)):
            if refinement is not None and (self.model.upper_layers or not posterior.gaussian_proposal):
                given = "a stack (model.upper_layers) is not" if self.model.upper_layers else \
                    f"the {posterior.kind!r} posterior does not have (posterior kind gaussian)"
                raise ValueError(f"{key}.refinement: refines a diagonal Gaussian q(z|x), which {given}; set it to null")
        return self


SWEEPS = {"objective.num_samples": "K (samples per example in training)",
          "model.posterior.auxiliary_samples": "K_tau (auxiliary samples per draw, IWHVI)"}


class KStudyParams(Section):
    """The K study: one experiment trained and evaluated once per value K of the setting `sweep`
    (the objective's K, or a hierarchical posterior's K_tau) besides its own (that point is the
    experiment's run)."""

    experiment: str = "iwae"
    num_samples: Ints = Field((1, 5, 10), min_length=1)  # the values of `sweep`
    sweep: Literal[tuple(SWEEPS)] = "objective.num_samples"

    def value_of(self, params: "Params") -> Optional[int]:
        """The swept setting's value in `params` (None where its part has no such field)."""
        value = params
        for key in self.sweep.split("."):
            value = getattr(value, key, None)
        return value

    @field_validator("num_samples")
    @classmethod
    def _distinct_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in value) or len(set(value)) != len(value):
            raise ValueError(f"needs distinct values >= 1, got {list(value)}")
        return value


K_STUDY_RUN = re.compile(r"k_study/k(\d+)")


class ParamsFile(Params):
    """`params.yaml`: a base `Params`, named experiments (overrides of the base), and the K
    study (an experiment repeated over K). A *run* is what one train/evaluate stage runs: an
    experiment name, or `k_study/k<K>`."""

    experiments: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"vae": {}})
    k_study: Optional[KStudyParams] = None

    @field_validator("experiments")
    @classmethod
    def _experiment_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("needs at least one experiment, e.g. {vae: {}}")
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"experiment name {name!r} may use only letters, digits, '_' and '-'")
            if name == "k_study":  # its outputs would hold the K study's (models/k_study/k<K>): DVC refuses the overlap
                raise ValueError("experiment name 'k_study' is the K study's (its runs are k_study/k<K>); choose another")
        return value

    @field_validator("k_study")
    @classmethod
    def _k_study_experiment(cls, value: Optional[KStudyParams], info: ValidationInfo) -> Optional[KStudyParams]:
        experiments = info.data.get("experiments", {})
        if value is not None and value.experiment not in experiments:
            raise ValueError(f"experiment: no experiment named {value.experiment!r}; defined: {sorted(experiments)}")
        return value

    @model_validator(mode="after")
    def _k_study_points_are_new_runs(self) -> "ParamsFile":
        study = self.k_study
        if study is not None:
            own = study.value_of(self.experiment(study.experiment))
            if own is None:
                raise ValueError(f"k_study.sweep: experiment {study.experiment!r} has no {study.sweep} "
                                 "(model.posterior.auxiliary_samples: a hierarchical posterior's)")
            if own in study.num_samples:
                raise ValueError(f"k_study.num_samples: {own} is experiment {study.experiment!r}'s own value "
                                 f"({study.sweep}), a point the study takes from that experiment's run; "
                                 "list only the others")
        return self

    def base(self) -> dict[str, Any]:
        return self.model_dump(mode="python", exclude={"experiments", "k_study"})

    def experiment(self, name: str) -> Params:
        """The base params with experiment `name`'s overrides deep-merged on top."""
        return _validate(Params, self._merged(name), where=f"experiments.{name}")

    def _merged(self, name: str) -> dict[str, Any]:
        """Experiment `name`'s params as a dict, not yet validated."""
        if name not in self.experiments:
            raise ParamsError(f"experiments: no experiment named {name!r}; defined: {sorted(self.experiments)}")
        return deep_merge(self.base(), self.experiments[name] or {})

    def runs(self) -> list[str]:
        """Every run: the experiments, then the K study's points."""
        return [*self.experiments, *(f"k_study/k{k}" for k in (self.k_study.num_samples if self.k_study else ()))]

    def run(self, name: str) -> Params:
        """The params of run `name`: an experiment, or `k_study/k<K>` (the K study's experiment
        with its `k_study.sweep` setting = K, K one of k_study.num_samples)."""
        match = K_STUDY_RUN.fullmatch(name)
        if not match:
            return self.experiment(name)
        k = int(match.group(1))
        if self.k_study is None:
            raise ParamsError("k_study: not set in params; add k_study: {experiment: ..., num_samples: [...]}")
        if k not in self.k_study.num_samples:
            raise ParamsError(f"k_study.num_samples: {k} is not one of {list(self.k_study.num_samples)}")
        merged = self._merged(self.k_study.experiment)
        *sections, key = self.k_study.sweep.split(".")
        section = merged
        for name in sections:
            section = section[name]
        section[key] = k
        return _validate(Params, merged, where=f"k_study.num_samples ({k})")


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` on top of `base`, section by section. A part section whose kind changes is
    replaced, not merged: the fields of one kind mean nothing to another. Shares nothing with
    either argument."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, str) and isinstance(current, dict) and "kind" in current:
            value = {"kind": value}  # a kind's name: that kind, with its defaults or the base's fields
        sections = isinstance(value, dict) and isinstance(current, dict)
        if sections and value.get("kind", current.get("kind")) == current.get("kind"):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validate(model: type[BaseModel], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping of keys to values, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as err:
        problems = [f"{where}: {problem}" for problem in describe_errors(err, model)]
        raise ParamsError("invalid params:\n  " + "\n  ".join(problems)) from None


def load_params(path: str | Path = "params.yaml") -> ParamsFile:
    """Read and validate `path`, including every experiment's merged config. It is read as DVC
    reads it (ruamel.yaml, YAML 1.2: `1e-3` is a number; a key given twice is an error), so what
    DVC sees as changed or unchanged is what the stages see."""
    path = Path(path)
    try:
        raw = YAML(typ="safe").load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ParamsError(f"{path}: not valid YAML: {getattr(err, 'problem', None) or err}{at}") from None
    params = _validate(ParamsFile, raw if raw is not None else {}, where=str(path))
    for name in params.runs():
        params.run(name)
    return params
