"""TensorBoard scalars per epoch, written by rank 0 only (tensorboardX).

Every rank holds a ``ScalarLog`` so the loops need no rank checks; on other ranks it writes
nothing. A resumed stage opens the writer with ``purge_step`` = the first epoch it will run, so
TensorBoard drops whatever a killed run logged after its last checkpoint and the curves stay
single-valued.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from tensorboardX import SummaryWriter

__all__ = ["ScalarLog"]


class ScalarLog:
    """``log(epoch, {tag: value})`` into ``log_dir`` when ``enabled``; non-finite values skipped."""

    def __init__(self, log_dir: str | os.PathLike[str], *, enabled: bool, start_epoch: int) -> None:
        self.log_dir = os.fspath(log_dir)
        self._writer = SummaryWriter(self.log_dir, purge_step=start_epoch or None) if enabled else None

    def log(self, epoch: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for tag, value in scalars.items():
            if math.isfinite(float(value)):
                self._writer.add_scalar(tag, float(value), global_step=epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
