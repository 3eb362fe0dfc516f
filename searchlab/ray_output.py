"""What a sweep's output holds, set where Ray is launched: searchlab's progress lines, not Ray's routine noise.

A normal local sweep on Ray 2.60 printed, besides the trials' work:

- ``(PlacementGroupCleaner pid=...) Failed to query Ray Train Controller actor state...`` about once a
  second per running Ray Train stage: the cleaner actor polls the State API, which a Ray started
  without its dashboard does not serve, and logs a warning each time. Silenced by
  ``quiet_ray_worker``, the job's ``worker_process_setup_hook``: that one logger at ERROR.
- Tune's new output engine: a configuration box per trial, a trial-status table every few seconds, a
  result box per trial, and a ``tensorboard --logdir /tmp/ray/session_.../artifacts/...`` hint naming
  Tune's staging folder, not the run folder. Replaced by Tune's legacy engine at verbosity 0
  (``RAY_AIR_NEW_OUTPUT=0``, ``RunConfig(verbose=0)``), which prints nothing routine; searchlab's
  driver prints one line per trial start and end and its summary instead (``tune_driver``).
- On a machine running several Ray instances, the same poll failed otherwise: the cleaner's monitor
  thread died with ``ConnectionError: Found multiple active Ray instances`` (a 30-line traceback per
  distributed stage), because its State API client finds the cluster by ``RAY_ADDRESS``, which Ray's
  worker processes lack. ``quiet_ray_worker`` names the worker's own cluster there.
- Ray Train's INFO lines per report and checkpoint (``Reporting training result ...``, ``Checkpoint
  successfully created ...``): ``RunConfig(logging_config=LoggingConfig("WARNING"))`` (``train.launch``)
  for the ``ray.train`` loggers, and the setup hook for the report line's logger, which Ray names after
  its file.

Nothing of an error is hidden: Tune's ``Trial task failed for trial ...`` with the trial's traceback,
Ray Train's and every other warning and error, and any worker's stderr still reach the driver. ``--verbose``
(``SEARCHLAB_OUTPUT=verbose``) keeps all of Ray's own output as well.

Imports no Ray (the setup hook runs in every worker process of the job, at its start).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from searchlab.progress import LINE_PATTERN, OUTPUT_ENV, OUTPUTS

__all__ = ["SILENCED_LOGGERS", "prepare_driver_env", "quiet_ray_worker", "ray_init_options"]

#: Ray loggers whose warnings are routine noise in a sweep (raised to ERROR in its worker processes).
SILENCED_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)
SETUP_HOOK = "searchlab.ray_output.quiet_ray_worker"


# Ray Train logs "Reporting training result ..." once per report, at INFO, with a logger named after its
# file, which RunConfig's LoggingConfig (``ray.train`` loggers only) does not reach: under ray's folder.
_REPORT_LOGGER_FILE = ("train", "v2", "_internal", "execution", "context.py")


def quiet_ray_worker() -> None:
    """Every worker process's setup hook (normal and quiet output): the routine warnings off, errors kept.

    It also names this worker's own cluster in ``RAY_ADDRESS`` (unless set): Ray Train's placement-group
    cleaner actor resolves its State API client from it, and without it, on a machine where several Ray
    instances run, its monitor thread died with "ConnectionError: Found multiple active Ray instances"
    and a 30-line traceback per distributed stage.
    """
    import ray  # a Ray worker process: already imported and connected

    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    for name in SILENCED_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger(os.path.join(os.path.dirname(ray.__file__), *_REPORT_LOGGER_FILE)).setLevel(logging.WARNING)


def prepare_driver_env(output: str) -> None:
    """Settings Ray's driver reads from its environment: call before Ray is imported.

    searchlab's progress lines are never merged by Ray's log deduplication (its allow-list); the
    output level goes to the processes this driver's local Ray starts.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r}: use one of {', '.join(OUTPUTS)}")
    os.environ[OUTPUT_ENV] = output
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", LINE_PATTERN)
    if output != "verbose":
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # read when Tune's fit starts


def ray_init_options(output: str) -> dict[str, Any]:
    """``ray.init`` keywords of a sweep's driver: the output level for every worker process of the job
    (also on a cluster's other nodes, which do not inherit the driver's environment) and the setup hook."""
    runtime_env: dict[str, Any] = {"env_vars": {OUTPUT_ENV: output}}
    if output != "verbose":
        runtime_env["worker_process_setup_hook"] = SETUP_HOOK
    return {"log_to_driver": True, "runtime_env": runtime_env}
