"""The Ray probe path of `python -m searchlab.data.prepare ... --ray ADDRESS` (launch layer).

The videos are probed with `searchlab.data.prepare.probe_video`, as on the local path, but in Ray
tasks spread over the cluster's nodes (SPREAD, 1 CPU each), one task per chunk of videos so that a
million-video set is not a million tasks. Results come back in the order of the paths, so the
manifest is the one the local process pool writes; each chunk also says which node probed it.
Ray is imported here only: `searchlab.data` stays plain Python.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from searchlab.data.prepare import PrepareError, probe_video

__all__ = ["ProbeRun", "chunk_size_for", "probe_on_ray"]

Probe = tuple[dict[str, Any] | None, str | None]
ProbeRun = tuple[list[Probe], Counter]  # the probes, in the order of the paths; node id -> videos probed
# Several chunks per CPU let a fast node take more of them; the cap keeps the progress bar moving.
CHUNKS_PER_CPU = 4
MAX_CHUNK = 64


def chunk_size_for(videos: int, cpus: float) -> int:
    """Videos per task: about CHUNKS_PER_CPU chunks per CPU of the cluster, 1 to MAX_CHUNK videos each."""
    return max(1, min(MAX_CHUNK, math.ceil(videos / (max(1.0, cpus) * CHUNKS_PER_CPU))))


def _probe_chunk(root: str, paths: Sequence[str]) -> tuple[str, list[Probe] | None, str | None]:
    """(node id, probes, None) of one chunk, or (node id, None, problem) when this node cannot see the
    videos folder: probed there, every video would be reported unreadable instead."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    if not os.path.isdir(root):
        return node, None, (f"node {node} does not see the videos folder {root}: mount the shared storage "
                            "that holds it on every node (cluster.yaml) or probe locally (no --ray)")
    return node, [probe_video(path) for path in paths], None


def _join(address: str) -> bool:
    """Join the cluster at `address` unless this process already joined one; whether it joined here."""
    import ray

    if ray.is_initialized():
        return False
    try:
        # the tasks' output (decoder warnings on corrupt files) stays in the nodes' logs
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as error:
        raise PrepareError(f"--ray {address}: cannot join a Ray cluster there ({error}); start one "
                           "(`ray start --head`) or give its head's address (HOST:6379)") from error
    return True


def probe_on_ray(paths: Sequence[str], *, root: str, address: str, chunk_size: int | None = None,
                 progress: bool = True) -> ProbeRun:
    """Probe `paths` (files under the videos folder `root`) in Ray tasks over the cluster at `address`
    ('auto': RAY_ADDRESS or the Ray started on this machine; ignored when this process already joined
    one). `chunk_size` videos per task (default: `chunk_size_for` the cluster's CPUs)."""
    import ray

    joined = _join(address)
    try:
        size = chunk_size or chunk_size_for(len(paths), ray.cluster_resources().get("CPU", 0.0))
        task = ray.remote(_probe_chunk).options(num_cpus=1, scheduling_strategy="SPREAD")
        chunks = [list(paths[start:start + size]) for start in range(0, len(paths), size)]
        refs = [task.remote(root, chunk) for chunk in chunks]
        sizes = {ref: len(chunk) for ref, chunk in zip(refs, chunks)}
        with tqdm(total=len(paths), desc="probing videos on Ray", unit="video", disable=not progress) as bar:
            pending = list(refs)
            while pending:
                [ready], pending = ray.wait(pending, num_returns=1)
                bar.update(sizes[ready])
        probes: list[Probe] = []
        nodes: Counter = Counter()
        for node, chunk_probes, problem in ray.get(refs):
            if problem:
                raise PrepareError(problem)
            probes.extend(chunk_probes)
            nodes[node] += len(chunk_probes)
        return probes, nodes
    finally:
        if joined:
            ray.shutdown()
