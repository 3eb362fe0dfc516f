"""Stage keys from a method's declarations: what each stage's cached artifact is named by."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from searchlab.cache import stage_key
from searchlab.methods._contract import Method, Stage

__all__ = ["stage_fields", "stage_keys"]


def _lookup(tree: Any, key: str) -> Any:
    node = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"declared key {key!r} is not in the trial configuration (no {part!r}); fix the "
                           "method's stage declaration")
        node = node[part]
    return node


def _without(value: Any, path: list[str]) -> None:
    """Remove the nested key ``path`` from the mapping ``value`` (in place), if present."""
    for part in path[:-1]:
        if not isinstance(value, dict) or part not in value:
            return
        value = value[part]
    if isinstance(value, dict):
        value.pop(path[-1], None)


def stage_fields(stage: Stage, tree: Mapping[str, Any]) -> dict[str, Any]:
    """The values of ``stage.depends_on`` in the configuration ``tree`` (JSON dump), ignores removed."""
    fields = {}
    for prefix in stage.depends_on:
        value = copy.deepcopy(_lookup(tree, prefix))
        for ignored in stage.ignores:
            if ignored.startswith(prefix + "."):
                _without(value, ignored[len(prefix) + 1:].split("."))
        fields[prefix] = value
    return fields


def stage_keys(method: Method, tree: Mapping[str, Any], *, data_fingerprint: str) -> dict[str, str]:
    """Each stage's key: a hash of its declared fields, its artifact format, the data's fingerprint
    (when it reads data) and the keys of the stages it needs, so a change reaches every stage
    downstream of it."""
    keys: dict[str, str] = {}
    for stage in method.stages:
        fields: dict[str, Any] = {"fields": stage_fields(stage, tree), "needs": {n: keys[n] for n in stage.needs},
                                  "version": stage.version}
        if stage.reads_data:
            fields["data"] = data_fingerprint
        keys[stage.name] = stage_key(f"{method.name}.{stage.name}", fields)
    return keys
