"""The main job: `python -m searchlab.sweep spaces/X.yaml`.

Ray Tune proposes trials with an Optuna sampler (define-by-run space, multi-objective, constraints
bridged, study in RUN_DIR/optuna.db for optuna-dashboard); each trial runs the method's stages with
Ray Train through the content-addressed stage cache (`searchlab.pipeline`); a driver-side callback
streams one row per trial into RUN_DIR/trials.parquet. `--resume` continues an interrupted sweep.

The run folder is marked as searchlab's when the sweep starts and locked while it runs
(`searchlab.run_dir`): `--overwrite` deletes only a marked run folder no live sweep holds, and a
second sweep on a live run folder is refused. Exit codes: 0 done, 1 every trial failed, 2 refused.

Output: the plan, then one line per trial event (``[trial N ID] ...``: start, each cache hit, wait or
build, each epoch with its ETA, the end) and a summary; Ray's routine output is silenced where Ray is
launched (``searchlab.ray_output``), its warnings, errors and the tracebacks of failed trials are not.
``--quiet`` drops the epoch lines, ``--verbose`` adds Ray's own tables and logs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from searchlab.cli import command_parser
from searchlab.config import ConfigError, Sweep, apply_run_options, load_sweep
from searchlab.data_check import DataMissing, check_manifest, ensure_data
from searchlab.plan import describe_plan
from searchlab.ray_output import prepare_driver_env
from searchlab.run_dir import (
    CONFIG_PATH_FIELDS,
    TUNE_DIR_NAME,
    RunDirError,
    clear_run_dir,
    hold_run_dir,
    mark_run_dir,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = command_parser("searchlab.sweep", description=(
        "Run a sweep: validate the sweep file, print the trial plan, then train and search its method's "
        "configurations with Ray Tune and Optuna; results go to STORAGE/NAME (trials.parquet, optuna.db)."),
        examples=["python -m searchlab.sweep spaces/demo.yaml --dry-run",
                  "python -m searchlab.sweep spaces/demo-arnet.yaml --overwrite",
                  "python -m searchlab.sweep spaces/anet.yaml --resume --address auto"])
    parser.add_argument("file", help="sweep file, e.g. spaces/demo.yaml")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the interrupted sweep in its run directory")
    parser.add_argument("--max-trials", type=int, default=None, help="override search.trials")
    parser.add_argument("--dry-run", action="store_true", help="validate, print the trial plan, run nothing")
    parser.add_argument("--storage", default=None, help="override storage (the run directory's parent)")
    start.add_argument("--overwrite", action="store_true",
                        help="delete an earlier run of this sweep first (only a searchlab run folder that no "
                             "running sweep holds; cached stage artifacts are kept)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--quiet", action="store_const", dest="output", const="quiet",
                        help="print each trial's start and end and the stage cache's events, no line per epoch")
    amount.add_argument("--verbose", action="store_const", dest="output", const="verbose",
                        help="also print Ray's own output: Tune's trial tables and result boxes, Ray Train's logs")
    parser.set_defaults(output="normal")
    return parser.parse_args(argv)


def _refusal(run_dir: Path, args: argparse.Namespace) -> str | None:
    """Why this command must not start in ``run_dir`` given its earlier run, if it must not."""
    previous = run_dir / TUNE_DIR_NAME
    if args.resume and not previous.exists():
        return f"--resume given but {previous} does not exist; run without --resume"
    if previous.exists() and not (args.resume or args.overwrite):
        return f"{run_dir} holds an earlier run; continue it with --resume or start over with --overwrite"
    return None


@contextlib.contextmanager
def _claimed(run_dir: Path, args: argparse.Namespace) -> Iterator[None]:
    """Hold the run folder's lock for the block, having checked that this command may use it."""
    with hold_run_dir(run_dir):
        refusal = _refusal(run_dir, args)
        if refusal:
            raise RunDirError(refusal)
        yield


def _user_paths(sweep: Sweep, args: argparse.Namespace) -> list[Path]:
    """Files of the user's that --overwrite must never delete: the sweep file and the configured paths."""
    configured = []
    for base in sweep.method_bases().values():
        tree = base.model_dump(mode="json")
        for section, key in CONFIG_PATH_FIELDS:
            value = (tree.get(section) or {}).get(key)
            configured += [item for item in (value if isinstance(value, list) else [value]) if item]
    return [Path(args.file), *map(Path, dict.fromkeys(configured))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sweep = apply_run_options(load_sweep(args.file), trials=args.max_trials, storage=args.storage)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_dir = Path(sweep.storage).resolve() / sweep.base.name
    print(describe_plan(sweep, run_dir=run_dir))
    if args.dry_run:
        try:
            ensure_data(sweep.base.data, generate=False)
        except DataMissing as missing:
            print(f"\nnote: {missing}")
            return 0
        try:
            check_manifest(sweep.base.data)
        except DataMissing as unusable:
            print(f"error: {unusable}", file=sys.stderr)
            return 2
        return 0
    try:
        with contextlib.ExitStack() as claim:
            # An existing folder is claimed first, so a live sweep or someone else's folder is refused at
            # once; a new one only after the data check, so that a refusal there leaves nothing behind.
            existed = run_dir.exists() or run_dir.is_symlink()
            if existed:
                claim.enter_context(_claimed(run_dir, args))
            elif args.resume:
                raise RunDirError(_refusal(run_dir, args))
            ensure_data(sweep.base.data, generate=True)
            check_manifest(sweep.base.data)
            if not existed:
                claim.enter_context(_claimed(run_dir, args))
            if args.overwrite:
                clear_run_dir(run_dir, keep=_user_paths(sweep, args))
            mark_run_dir(run_dir, sweep_name=sweep.base.name)
            prepare_driver_env(args.output)  # before Ray is imported: it reads some settings once
            from searchlab.tune_driver import run_sweep  # imports Ray: only when something runs

            summary = run_sweep(sweep, run_dir=run_dir, address=args.address, resume=args.resume, output=args.output)
    except (RunDirError, DataMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary)
    if summary.every_trial_failed:
        print(f"error: every trial failed ({summary.failed}); their reasons are in the trials table "
              f"(python -m searchlab.report {run_dir})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    sys.exit(main())
