"""Every `python -m searchlab.*` command: a description, examples, defaults in its help, no
developer-only options there, and usage errors as `error: ...` with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["searchlab.sweep", "searchlab.report", "searchlab.pick", "searchlab.evaluate", "searchlab.flops",
            "searchlab.train", "searchlab.data.prepare"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help_says_what_the_command_does_with_examples(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout
    usage, description = out.split("\n\n")[:2]
    assert usage.startswith(f"usage: python -m {module} ")
    assert len(description.split()) >= 8  # a sentence, not a restated usage line
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  python -m {module} ") for line in examples if line.strip())
    assert "fail-after-epoch" not in out and "(default: None)" not in out


@pytest.mark.parametrize("module", COMMANDS)
def test_a_usage_error_is_one_error_line_and_exit_code_2(module: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--no-such-option"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"python -m {module}: error: ")


def test_the_defaults_are_shown() -> None:
    out = subprocess.run([sys.executable, "-m", "searchlab.evaluate", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "(default: val)" in out and "(default: 2)" in out
