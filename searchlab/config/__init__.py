"""Typed configuration (moving into modules of this package; see searchlab.config._trial)."""

from searchlab.config._trial import *  # noqa: F403
from searchlab.config._trial import _resolve_paths as _resolve_paths
