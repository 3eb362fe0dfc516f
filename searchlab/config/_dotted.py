"""Dotted keys (`stage2.w1`, `stage1.alpha.lr.4`) into a configuration tree: setting, reading, and
comparing values whichever side (YAML lists or config tuples) they come from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> str | None:
    """Set `a.b.c` in a nested dict; returns a problem string when the key does not exist."""
    parts = key.split(".")
    node: Any = tree
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            return f"{key}: {'.'.join(parts[:depth])} is not a section, so {part!r} cannot be set"
        name: Any = part
        if name not in node and part.lstrip("-").isdigit() and int(part) in node:
            name = int(part)
        if name not in node and not _open_mapping(node):
            known = ", ".join(str(k) for k in node)
            return f"{key}: unknown key {part!r}; known keys here: {known}"
        if depth == len(parts) - 1:
            node[name] = value
        else:
            node = node.setdefault(name, {})
    return None


def _open_mapping(node: dict[Any, Any]) -> bool:
    """Per-bit tables (dict[int, float]) accept new integer keys; sections do not."""
    return bool(node) and all(isinstance(k, int) for k in node)


def plain(value: Any) -> Any:
    """Tuples as lists and mappings as dicts, recursively: YAML gives lists, a config gives tuples,
    so values compare equal whichever side they come from."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def get_dotted(tree: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of dotted `key` in a nested dict; per-bit tables have integer keys."""
    node = tree
    for part in key.split("."):
        name: Any = part
        if isinstance(node, dict) and part not in node and part.lstrip("-").isdigit():
            name = int(part)
        if not isinstance(node, dict) or name not in node:
            return False, None
        node = node[name]
    return True, node
