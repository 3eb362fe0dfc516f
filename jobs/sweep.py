"""Ray Job entry point of a sweep on a cluster: check that every node sees the storage and the data, then sweep.

    ray job submit --working-dir . -- python jobs/sweep.py spaces/anet.yaml [searchlab.sweep options]

runs on the head (the job's driver). Before any trial it runs one tiny task on every alive node that
can run stage workers (pinned to that node) which (1) writes a probe file into the sweep's storage
folder and (2) reads the sweep's manifest and the first videos it names; a second round checks that
every node sees every other node's probe, i.e. that `storage` is one shared folder and not a local
disk per node (a stage cached by one node would be invisible to the others, and a resumed stage
would not find its checkpoints). A problem is named with the node and the exit code is 2, as for
`python -m searchlab.sweep`'s own refusals; otherwise `python -m searchlab.sweep` runs with the
same arguments and its exit code is the job's.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

# the working dir is the job's cwd; `python jobs/sweep.py` puts jobs/ first on sys.path, not the repo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROBE_PREFIX = ".searchlab-node-probe-"


def _probe_storage(storage: str, token: str) -> tuple[str, str | None]:
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        folder = Path(storage)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{PROBE_PREFIX}{token}-{node}").write_text(node)
    except OSError as error:
        return node, f"cannot write to storage {storage}: {error}"
    return node, None


def _sees(storage: str, token: str) -> tuple[str, set[str]]:
    import ray

    seen = {p.name.rsplit("-", 1)[1] for p in Path(storage).glob(f"{PROBE_PREFIX}{token}-*")}
    return ray.get_runtime_context().get_node_id(), seen


def _probe_data(manifest: str, root: str | None) -> tuple[str, str | None]:
    import ray

    node = ray.get_runtime_context().get_node_id()
    try:
        from searchlab.data.manifest import read_manifest

        table = read_manifest(manifest)
        videos = Path(root) if root else Path(manifest).parent
        missing = [str(videos / path) for path in table.table.column("path").to_pylist()[:8]
                   if not (videos / path).is_file()]
    except Exception as error:  # noqa: BLE001 - any reason the node cannot read it is the answer
        return node, f"cannot read the manifest {manifest}: {type(error).__name__}: {error}"
    if missing:
        return node, f"the manifest's videos are not there, e.g. {missing[0]}"
    return node, None


def check_cluster(storage: Path, manifest: str, root: str | None) -> list[str]:
    """Problems with the nodes' view of the storage and the data (empty: every node sees both)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    if not nodes:
        return ["no alive node offers CPUs for the stage workers"]
    token = uuid.uuid4().hex[:12]

    def on_every_node(function, *args):
        task = ray.remote(num_cpus=0)(function)
        return ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                        .remote(*args) for node in nodes])

    problems = [f"node {node[:12]}: {problem}" for node, problem in on_every_node(_probe_storage, str(storage), token)
                if problem]
    if not problems:
        for node, seen in on_every_node(_sees, str(storage), token):
            unseen = sorted(set(nodes) - seen)
            if unseen:
                problems.append(f"node {node[:12]} does not see the files other nodes wrote into {storage} "
                                f"(from {', '.join(n[:12] for n in unseen)}): storage must be a folder every node "
                                "shares (an NFS/EFS mount, see cluster.yaml)")
    for probe in storage.glob(f"{PROBE_PREFIX}{token}-*"):
        probe.unlink(missing_ok=True)
    problems += [f"node {node[:12]}: {problem}" for node, problem in on_every_node(_probe_data, manifest, root)
                 if problem]
    return problems


def main(argv: list[str] | None = None) -> int:
    from searchlab import sweep as sweep_cli
    from searchlab.config import ConfigError, apply_run_options, load_sweep
    from searchlab.ray_output import prepare_driver_env

    argv = list(sys.argv[1:] if argv is None else argv)
    args = sweep_cli.parse_args(argv)
    prepare_driver_env(args.output)  # before Ray is imported
    import ray

    from searchlab.tune_driver import init_ray

    try:
        sweep = apply_run_options(load_sweep(args.file), trials=args.max_trials, storage=args.storage)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.dry_run:
        init_ray(args.address or os.environ.get("RAY_ADDRESS") or "auto", output=args.output)
        storage = Path(sweep.storage).resolve()
        problems = check_cluster(storage, sweep.base.data.manifest, sweep.base.data.root)
        if problems:
            print("error: the cluster's nodes cannot run this sweep:\n  " + "\n  ".join(problems), file=sys.stderr)
            return 2
        print(f"searchlab: {len([n for n in ray.nodes() if n['Alive']])} nodes see {storage} and the data")
    return sweep_cli.main(argv)


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    sys.exit(main())
