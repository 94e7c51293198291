"""Params' building blocks: a strict, frozen section, and a part's params keyed by kind.

A part section of `params.yaml` is `{kind: <name>, <that kind's fields>}`, or just the kind's
name for its defaults (`posterior: gaussian`). Each part keeps its kinds' params classes beside
their layers, in its folder's `params` module (`vae_tf.posteriors.params`, ...), registered with
that part's `Kinds`; the layer registers under the same name (`vae_tf.registry`). Nothing here
imports TensorFlow, so that `resolve` validates params without it.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

import pydantic
import pydantic_core
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo, field_validator

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


# The magnitudes float32 holds (besides 0): TensorFlow computes every setting in it, where a float
# outside them becomes 0 or inf and runs on to a meaningless result (an AIS step size of 1e300).
FLOAT32_TINY, FLOAT32_MAX = 1.1754944e-38, 3.4028235e38


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _float32(cls, value: Any) -> Any:
        """A float a float32 holds: 0, or a magnitude from `FLOAT32_TINY` to `FLOAT32_MAX`."""
        if isinstance(value, float) and value != 0 and not FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
            raise ValueError(f"{value!r} is not a float32 (0, or a magnitude from {FLOAT32_TINY:.2e} to "
                             f"{FLOAT32_MAX:.2e}): TensorFlow would compute with {'inf' if abs(value) > 1 else '0'}")
        return value

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
        """Those fields' values, as plain data (a nested section as a mapping, a tuple as a list),
        every one of them (a dump leaves out a field at the value its `exclude_if` names)."""
        return {name: pydantic_core.to_jsonable_python(getattr(self, name)) for name in self.setting_names()}


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
