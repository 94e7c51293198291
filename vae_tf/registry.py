"""The registry of each part (posterior, prior, likelihood, objective): kind -> Keras layer.

A part's layer registers under the kind name of its params class (its folder's `params`), so
that `Registry.build(params, context)` makes the part params describe. Every part carries a
`role`, the role of its trainable variables:

- `inference`: q(z|x) (the encoder);
- `generative`: p(x|z) and p(z) (the decoder, a learnable prior);
- `adversary`: what an adversarial objective trains against them (a discriminator).

Estimators and optimizers pick variables by role (`vae_tf.models.VAE.variables_by_role`),
never by where a layer lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import keras

from vae_tf.sections import Kinds, PartParams
from vae_tf.data import Meta
from vae_tf.errors import ParamsError

ROLES = ("inference", "generative", "adversary")


@dataclass(frozen=True)
class Context:
    """What a part may need besides its own params: the data, the latent space and the shared
    network settings (`model.latent_dim`, `model.hidden_units`, `model.activation`, and
    `model.network` with the data's image shape as `architecture`, None for an MLP; see
    `vae_tf.networks`)."""

    meta: Meta
    latent_dim: int
    hidden_units: tuple[int, ...]
    activation: str
    architecture: Optional[dict] = None

    @property
    def data_dim(self) -> int:
        """D, the values of one example."""
        return self.meta.dimension

    @property
    def n_levels(self) -> Optional[int]:
        """The grey levels of the data (None unless data.preprocessing is levels)."""
        return self.meta.n_levels


def plain(value: Any) -> Any:
    """A setting as a Keras config holds it: a tuple as a list."""
    return list(value) if isinstance(value, tuple) else value


class Part(keras.layers.Layer):
    """What every part's layer is. Its constructor takes, by name, the `Context` values it lists in
    `context_fields` and the fields of its kind's params class (its folder's `params`), and keeps
    each as an attribute of the same name. `from_params` and `get_config` are derived from those
    two lists, so a new field of a kind is one edit of its params class (and the code that uses it).
    The registry sets `kind`, `params_class` and `part` (the name the model gives the layer)."""

    role: ClassVar[str]
    context_fields: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str]
    params_class: ClassVar[type[PartParams]]
    part: ClassVar[str]

    @classmethod
    def from_params(cls, params: PartParams, context: Context) -> "Part":
        return cls(**{name: getattr(context, name) for name in cls.context_fields}, **params.settings(),
                   name=cls.part)

    def get_config(self):
        names = (*self.context_fields, *self.params_class.setting_names())
        return {**super().get_config(), **{name: plain(getattr(self, name)) for name in names}}

    @property
    def params(self) -> PartParams:
        """Its kind's params, from the settings the layer keeps (what `from_params` was given): what
        the params class derives from its fields is then written once, there."""
        return self.params_class(**{name: plain(getattr(self, name)) for name in self.params_class.setting_names()})


class Registry:
    """The layer classes of one part, by kind: each a `Part`."""

    def __init__(self, kinds: Kinds):
        self.kinds, self.classes = kinds, {}

    def register(self, kind: str):
        """Class decorator: the layer of `kind` (which needs a params class of that kind)."""

        def decorate(cls):
            if kind not in self.kinds.classes:
                raise TypeError(f"{self.kinds.path} kind {kind!r} has no params class; register one with "
                                "its part's KINDS (in the part's params module)")
            if not issubclass(cls, Part):
                raise TypeError(f"{cls.__name__}: a part's layer derives from vae_tf.registry.Part")
            if cls.role not in ROLES:
                raise TypeError(f"{cls.__name__}.role must be one of {ROLES}, got {cls.role!r}")
            self.classes[kind] = keras.saving.register_keras_serializable(package="vae_tf")(cls)
            cls.kind, cls.params_class = kind, self.kinds.classes[kind]
            cls.part = self.kinds.path.rsplit(".", 1)[-1]
            return cls

        return decorate

    def build(self, params: PartParams, context: Context) -> keras.layers.Layer:
        if params.kind not in self.classes:
            raise ParamsError(f"{self.kinds.path}.kind: {params.kind!r} has params but no layer registered")
        return self.classes[params.kind].from_params(params, context)
