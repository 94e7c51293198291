"""Loading a part's layers on first use (PEP 562), so that its params are read without TensorFlow.

A part's package (`vae_tf.posteriors`, ...) offers its layers by name; its `params` module, which
`resolve` reads, must not pull TensorFlow in with them."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable


def layers_on_demand(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """The package's `__getattr__`. `names` maps each name it offers to the module of `package`
    that holds it. The first one asked for imports every module of the package (each kind's
    registers its layer, so that the registry is whole, and a new kind is its module and its
    params class, no line here) and is then kept on the package. A name may not be that of a
    module of the package: importing the module would set the package's attribute to the module,
    and the name would never be asked for."""
    modules = sorted(module.name for module in pkgutil.iter_modules(sys.modules[package].__path__))
    if clashes := sorted(set(modules) & set(names)):
        raise ValueError(f"{package}: {clashes} name both a module and a name it offers; import them from the module")

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        for module in modules:
            importlib.import_module(f"{package}.{module}")
        value = getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
