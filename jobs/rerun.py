"""Ray Job entry point of a front re-run on a cluster: `python -m searchlab.rerun` with the same arguments.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/rerun.py runs/anet-videoiq-r50 --front --seeds 3 --eval-clips 10 --eval-crops 3

(`-- python -m searchlab.rerun ...` works as the entry point too.) The job's driver joins the cluster
through RAY_ADDRESS, which `ray job submit` sets (or `--address`); the run folder and the stage cache
beside it must be on the shared storage the sweep used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# the working dir is the job's cwd; `python jobs/rerun.py` puts jobs/ first on sys.path, not the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if __name__ == "__main__":
    from searchlab.rerun import main

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    sys.exit(main())
