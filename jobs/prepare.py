"""Ray Job entry point of preparing a data set on a cluster: `python -m searchlab.data.prepare` with the
same arguments, its videos probed in Ray tasks spread over the cluster's nodes (`--ray`).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/prepare.py activitynet --annotations /shared/anet/activity_net.v1-3.min.json \
        --videos /shared/anet/videos --out /shared/anet/manifest.parquet --no-progress

The job's driver joins the cluster through RAY_ADDRESS, which `ray job submit` sets (`--ray auto`, the
default here; `--ray HOST:PORT` names another). Before probing, the driver checks that it sees the
videos folder and the folder of --out: both must be on the storage every node mounts (the manifest's
paths are relative to the videos folder, and the nodes probe the videos at the driver's paths; a node
that does not see them stops the job with its node id). A problem exits with code 2, as prepare's own.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# the working dir is the job's cwd; `python jobs/prepare.py` puts jobs/ first on sys.path, not the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def storage_problems(args: argparse.Namespace) -> list[str]:
    """What the job's driver cannot see of the folders prepare reads and writes (empty: both there)."""
    if args.source == "synthetic":
        return ["the synthetic source probes no videos: run `python -m searchlab.data.prepare synthetic --out DIR` "
                "where DIR is on the shared storage"]
    # the job's cwd is its copy of the working dir: a relative path would read and write inside that copy
    problems = [f"{option} {path}: give an absolute path on the storage every node mounts (the job's working "
                "directory is a copy that the nodes do not share and that is deleted after the job)"
                for option, path in (("--videos", args.videos), ("--out", args.out)) if not path.is_absolute()]
    if problems:
        return problems
    if not args.videos.is_dir():
        problems.append(f"--videos {args.videos}: no such folder on the job's driver; give the videos' folder "
                        "on the storage every node mounts (cluster.yaml)")
    out_folder = args.out.parent
    if not out_folder.is_dir():
        problems.append(f"--out {args.out}: its folder {out_folder} does not exist on the job's driver; create it on "
                        "the shared storage (a folder on the head's own disk would hide a missing mount)")
    return problems


def main(argv: list[str] | None = None) -> int:
    from searchlab.data import prepare

    argv = list(sys.argv[1:] if argv is None else argv)
    args = prepare.parse_args(argv)
    problems = storage_problems(args)
    if problems:
        print("error: the job cannot prepare this data set:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    print(f"searchlab: the driver sees --videos {args.videos} and --out's folder {args.out.parent}", flush=True)
    if args.ray is None:
        argv += ["--ray", "auto"]  # the cluster this job's driver joined (RAY_ADDRESS)
    return prepare.main(argv)


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    sys.exit(main())
