"""The style every `python -m searchlab.*` command shares: a description that says what it does,
defaults shown in the help, examples in the epilog, and usage errors as `error: ...` with exit code 2
(argparse's own convention, which the commands' other checks follow)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["command_parser"]


def command_parser(module: str, *, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """An ArgumentParser for ``python -m <module>`` with ``examples`` (shell lines) in its epilog."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return argparse.ArgumentParser(prog=f"python -m {module}", description=description, epilog=epilog,
                                   formatter_class=_Formatter)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help (where there is one to show); description and examples
    kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)
