"""The main job: `python -m searchlab.sweep spaces/X.yaml`.

Ray Tune proposes trials with an Optuna sampler (define-by-run space, multi-objective, constraints
bridged, study in RUN_DIR/optuna.db for optuna-dashboard); each trial runs the method's stages with
Ray Train through the content-addressed stage cache (`searchlab.pipeline`); a driver-side callback
streams one row per trial into RUN_DIR/trials.parquet. `--resume` continues an interrupted sweep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from searchlab.config import ConfigError, Sweep, load_sweep
from searchlab.data_check import DataMissing, ensure_data
from searchlab.plan import describe_plan

TUNE_DIR_NAME = "tune"
STUDY_NAME = "searchlab"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m searchlab.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="sweep file, e.g. spaces/demo.yaml")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the interrupted sweep in its run directory")
    parser.add_argument("--max-trials", type=int, default=None, help="override search.trials")
    parser.add_argument("--dry-run", action="store_true", help="validate, print the trial plan, run nothing")
    parser.add_argument("--storage", default=None, help="override storage (the run directory's parent)")
    start.add_argument("--overwrite", action="store_true",
                        help="delete an earlier run of this sweep first (cached stage artifacts are kept)")
    return parser.parse_args(argv)


def _with_cli_overrides(sweep: Sweep, args: argparse.Namespace) -> Sweep:
    update: dict[str, Any] = {}
    if args.max_trials is not None:
        if args.max_trials < 1:
            raise ConfigError("--max-trials", [f"--max-trials {args.max_trials} must be >= 1"])
        update["search"] = sweep.search.model_copy(update={"trials": args.max_trials})
    if args.storage is not None:
        update["storage"] = str(Path(args.storage).resolve())
    return sweep.model_copy(update=update) if update else sweep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sweep = _with_cli_overrides(load_sweep(args.file), args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if "://" in sweep.storage:
        print(f"error: storage {sweep.storage!r} is a URI; searchlab needs a file system path that every node sees "
              "(mount the bucket or NFS share, e.g. /mnt/searchlab/runs, and set storage to it)", file=sys.stderr)
        return 2
    run_dir = Path(sweep.storage).resolve() / sweep.base.name
    print(describe_plan(sweep, run_dir=run_dir))
    if args.dry_run:
        try:
            ensure_data(sweep.base.data, generate=False)
        except DataMissing as missing:
            print(f"\nnote: {missing}")
        return 0
    previous = run_dir / TUNE_DIR_NAME
    if args.resume and not previous.exists():
        print(f"error: --resume given but {previous} does not exist; run without --resume", file=sys.stderr)
        return 2
    if previous.exists() and not (args.resume or args.overwrite):
        print(f"error: {run_dir} holds an earlier run; continue it with --resume or start over with --overwrite",
              file=sys.stderr)
        return 2
    try:
        ensure_data(sweep.base.data, generate=True)
    except DataMissing as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    if args.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    from searchlab.tune_driver import run_sweep  # imports Ray: only when something runs

    summary = run_sweep(sweep, run_dir=run_dir, address=args.address, resume=args.resume)
    print(summary)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    sys.exit(main())
