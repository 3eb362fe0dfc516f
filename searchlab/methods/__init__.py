"""The registry of methods searchlab searches: ``list_methods()``, ``get_method(name)``.

A method is a ``Method`` (searchlab.methods._contract): its stages as a small graph, each with the
configuration keys it depends on and its loop, its cost model, baselines and bundle. Adding a method
means a package under searchlab/methods/, its line in ``_REGISTRY`` and its configuration section in
``searchlab.config`` (``METHOD_SECTIONS``; a test keeps the two lists equal).

The registry names modules rather than importing them: the configuration imports a method's section
model, and a method's stages import the configuration, so a method is imported when it is asked for.
"""

from __future__ import annotations

import fnmatch
import importlib

from searchlab.methods._contract import Bundle, FanOut, Method, Stage, depends_on_key, stage_order
from searchlab.methods._keys import stage_fields, stage_keys

__all__ = ["Bundle", "FanOut", "Method", "Stage", "depends_on_key", "get_method", "list_methods", "stage_fields",
           "stage_keys", "stage_order"]

#: method name -> "module:attribute" of its ``Method``.
_REGISTRY: dict[str, str] = {
    "videoiq": "searchlab.methods.videoiq.method:VIDEOIQ",
    "arnet": "searchlab.methods.arnet.method:ARNET",
    "vared": "searchlab.methods.vared.method:VARED",
}


def list_methods(pattern: str = "*") -> list[str]:
    """Names of the registered methods matching the shell-style ``pattern``, sorted."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(list_methods())}")
    module, attribute = _REGISTRY[name].split(":")
    method = getattr(importlib.import_module(module), attribute)
    if method.name != name:
        raise RuntimeError(f"{_REGISTRY[name]} declares method {method.name!r}, registered as {name!r}")
    return method
