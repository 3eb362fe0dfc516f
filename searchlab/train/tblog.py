"""TensorBoard scalars per epoch, written by rank 0 only (tensorboardX).

Every rank holds a ``ScalarLog`` so the loops need no rank checks; on other ranks it writes
nothing. Each epoch's scalars go through a writer that is closed right away: tensorboardX writes
events from a background queue that ``flush()`` does not drain, so a worker killed after its
checkpoint would otherwise lose the epoch it just logged (one small event file per epoch is the
price). A resumed stage opens its first writer with ``purge_step`` = the first epoch it will run,
so TensorBoard drops whatever a killed run logged after its last checkpoint.
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
        self.enabled = enabled
        self._purge_step: int | None = start_epoch or None

    def log(self, epoch: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        writer = SummaryWriter(self.log_dir, purge_step=self._purge_step, filename_suffix=f".epoch{epoch:06d}")
        self._purge_step = None
        try:
            for tag, value in scalars.items():
                if math.isfinite(float(value)):
                    writer.add_scalar(tag, float(value), global_step=epoch)
        finally:
            writer.close()
