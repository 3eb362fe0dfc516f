"""The registry of methods searchlab searches: ``list_methods()``, ``get_method(name)``.

A method is a ``Method`` (searchlab.methods._contract): its stages as a small graph, each with the
configuration keys it depends on and its loop. Adding a method means a package under
searchlab/methods/ and one line in ``_REGISTRY``.
"""

from __future__ import annotations

import fnmatch

from searchlab.methods._contract import Method, Stage, depends_on_key, stage_order
from searchlab.methods._keys import stage_fields, stage_keys
from searchlab.methods.videoiq import VIDEOIQ

__all__ = ["Method", "Stage", "depends_on_key", "get_method", "list_methods", "stage_fields", "stage_keys",
           "stage_order"]

_REGISTRY: dict[str, Method] = {method.name: method for method in (VIDEOIQ,)}


def list_methods(pattern: str = "*") -> list[str]:
    """Names of the registered methods matching the shell-style ``pattern``, sorted."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(list_methods())}")
    return _REGISTRY[name]
