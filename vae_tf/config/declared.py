"""What each stage of a run may read of its params: the keys it declares, and nothing else.

`resolve` writes, for every run, the declared keys of each stage to `resolved/<run>/<stage>.json`,
the file DVC tracks as that stage's dependency. The stage rebuilds its params from that file
alone (`load_declared`), behind a view that refuses any other key: a setting a stage reads but
does not declare would change its result without DVC rerunning it, so it cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vae_tf.config.schema import Params, _validate
from vae_tf.errors import ParamsError

# Sections, or keys as section.key. evaluate builds the model's step under XLA or not as training
# did (`vae_tf.models.uses_xla`: training.jit_compile, training.distribute, model.network); report
# (and a study's table) describe each experiment by all it trained with: its data, networks, parts,
# objective, training budget and seed (a study pairs each run with the plain VAE of the same).
STAGE_SETTINGS = {"train": ("seed", "model", "objective", "training"),
                  "evaluate": ("seed", "model.network", "training.jit_compile", "training.distribute", "evaluation"),
                  "export": ("evaluation.proposal_samples", "evaluation.proposal_scale", "export"),
                  "report": ("seed", "data", "model", "objective", "training")}


class UndeclaredSetting(LookupError):
    """A stage read a key its resolved file does not hold (a defect of the stage, not of params)."""


def declared(settings: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The values of `keys` (sections, or section.key) in `settings`, a run's params as JSON."""
    read: dict[str, Any] = {}
    for key in keys:
        section, _, field = key.partition(".")
        if field:
            read.setdefault(section, {})[field] = settings[section][field]
        else:
            read[section] = settings[section]
    return read


class DeclaredParams:
    """`params` as a stage sees it: the attributes named by `keys` (whole, or section.key), an
    `UndeclaredSetting` naming the key and `source` for any other."""

    def __init__(self, params: Any, keys: tuple[str, ...], source: str, prefix: str = ""):
        self._params, self._keys, self._source, self._prefix = params, keys, source, prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy and pickle probe for these before __init__ has run
            raise AttributeError(name)
        value = getattr(self._params, name)
        if name in self._keys:
            return value
        inner = tuple(key.partition(".")[2] for key in self._keys if key.startswith(f"{name}."))
        if inner:
            return DeclaredParams(value, inner, self._source, f"{self._prefix}{name}.")
        raise UndeclaredSetting(f"{self._prefix}{name}: not among the settings in {self._source}, so DVC would not "
                                "rerun the stage when it changes; declare it in vae_tf.config.declared.STAGE_SETTINGS")

    def __repr__(self) -> str:
        return f"DeclaredParams({self._prefix or ''}{list(self._keys)} of {self._source})"


def load_declared(path: str | Path, stage: str) -> DeclaredParams:
    """The params `stage` reads, from its resolved file `path` (`resolved/<run>/<stage>.json`)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found; `dvc repro` runs the resolve stage that writes it") from None
    except json.JSONDecodeError as err:
        raise ParamsError(f"{path}: not valid JSON ({err}); rerun the resolve stage (`dvc repro -f resolve`)") from None
    return DeclaredParams(_validate(Params, raw, where=str(path)), STAGE_SETTINGS[stage], str(path))
