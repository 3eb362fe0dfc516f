"""Stage keys from a method's declarations: what each stage's cached artifact is named by."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from searchlab.cache import stage_key
from searchlab.methods._contract import Method, Stage

__all__ = ["fan_out_items", "stage_fields", "stage_keys"]


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


def fan_out_items(stage: Stage, tree: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The items of a fanned-out stage: item i maps each key of ``fan_out.over`` to the i-th element
    of its list (None where the list is empty). A stage without fan-out has no items."""
    if stage.fan_out is None:
        return []
    lists = {key: list(_lookup(tree, key)) for key in stage.fan_out.over}
    count = len(next(iter(lists.values())))
    uneven = {key: len(values) for key, values in lists.items() if values and len(values) != count}
    if uneven:
        raise ValueError(f"stage {stage.name!r} fans out over lists of unequal length: {uneven} against {count}")
    return [{key: (values[i] if values else None) for key, values in lists.items()} for i in range(count)]


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


def stage_keys(method: Method, tree: Mapping[str, Any], *, data_fingerprint: str,
               per_trial_tree: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Each stage's key: a hash of its declared fields, its artifact format, the data's fingerprint
    (when it reads data) and the keys of the stages it needs, so a change reaches every stage
    downstream of it. A fanned-out stage has a list of keys, one per item, each hashing only its
    own item (two trials that share an item share that training).

    ``per_trial_tree``: the configuration the per-trial stages run with, when it differs from the
    shared stages' ``tree`` (a front re-run: a new seed or evaluation protocol for the per-trial
    stages on the search's shared artifacts, `searchlab.rerun`)."""
    keys: dict[str, Any] = {}
    for stage in method.stages:
        own = tree if stage.shared or per_trial_tree is None else per_trial_tree
        fields: dict[str, Any] = {"fields": stage_fields(stage, own), "needs": {n: keys[n] for n in stage.needs},
                                  "version": stage.version}
        if stage.reads_data:
            fields["data"] = data_fingerprint
        name = f"{method.name}.{stage.name}"
        if stage.fan_out is None:
            keys[stage.name] = stage_key(name, fields)
        else:
            keys[stage.name] = [stage_key(name, {**fields, "item": item}) for item in fan_out_items(stage, own)]
    return keys
