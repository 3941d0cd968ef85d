"""LNL methods, one algorithm a file; each registers itself in bench.registry.METHODS.

Importing the package imports every module in it, in alphabetical order, so that a new method
file is registered the moment it exists, with no list to keep.
"""

import importlib
import pkgutil


def _import_modules() -> None:
    for name in sorted(info.name for info in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{name}")


_import_modules()
