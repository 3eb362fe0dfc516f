"""CLI: ``python -m searchlab.train {teacher,stage1,stage2} --config spaces/demo.yaml [--set k=v ...]``.

Artifacts go to ``--out`` (default ``runs/<config name>``): ``<out>/teacher``, ``<out>/stage1``,
``<out>/stage2``; Ray runs under ``<out>/ray/<stage>-<hash>``, the hash covering the configuration
and the input artifacts, so re-running the same command resumes an interrupted run while a changed
configuration starts a fresh one. stage1 reads ``<out>/teacher`` (or ``--teacher``); stage2 also
``<out>/stage1`` (or ``--stage1``) and, unless ``--live``, a backbone-output cache it builds once
under ``<out>/stage2_cache``. Configuration errors exit with code 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from searchlab.config import ConfigError, TrialConfig, load_trial_config
from searchlab.methods import get_method

__all__ = ["main"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m searchlab.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("teacher", "stage1", "stage2"))
    parser.add_argument("--config", required=True, help="sweep file whose `base` is the trial configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key, value parsed as YAML (repeatable)")
    parser.add_argument("--out", help="output folder (default: runs/<config name>)")
    parser.add_argument("--teacher", help="teacher artifact folder (default: <out>/teacher)")
    parser.add_argument("--stage1", help="stage-1 artifact folder (default: <out>/stage1)")
    parser.add_argument("--live", action="store_true", help="stage2: compute backbone outputs live, no cache")
    parser.add_argument("--eval-every", type=int, default=0, help="also evaluate every N epochs")
    parser.add_argument("--fail-after-epoch", type=int, default=None,
                        help="fault injection: fail on purpose after this epoch's checkpoint (to try resuming)")
    return parser.parse_args(argv)


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    values, problems = {}, []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            problems.append(f"--set {pair!r}: write KEY=VALUE, e.g. --set stage2.w1=0.3")
            continue
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            problems.append(f"--set {pair!r}: value is not valid YAML ({error})")
    if problems:
        raise ConfigError("--set", problems)
    return values


def _ensure_data(config: TrialConfig) -> None:
    """Generate the synthetic data set when the manifest is missing and data.synthetic says how."""
    manifest = Path(config.data.manifest)
    if manifest.is_file():
        return
    if config.data.synthetic is None:
        raise ConfigError("data.manifest", [
            f"{manifest} does not exist; prepare the data set first (python -m searchlab.data.prepare "
            "...) or set data.synthetic to generate synthetic videos"])
    from searchlab.data.synthetic import generate_synthetic

    knobs = config.data.synthetic
    print(f"generating the synthetic data set into {manifest.parent} ...", flush=True)
    generate_synthetic(manifest.parent, num_classes=knobs.classes, train_per_class=knobs.train_per_class,
                       val_per_class=knobs.val_per_class, num_frames=knobs.frames, fps=knobs.fps, size=knobs.size,
                       seed=knobs.seed, multi_label=knobs.multi_label)
    if not manifest.is_file():
        raise ConfigError("data.manifest", [f"generate_synthetic wrote no {manifest.name} into {manifest.parent}; "
                                            f"point data.manifest at <folder>/manifest.parquet"])


def _run_name(stage: str, config: TrialConfig, inputs: dict[str, str | None]) -> str:
    payload = json.dumps({"config": config.model_dump(mode="json"), "inputs": inputs}, sort_keys=True)
    return f"{stage}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        config = load_trial_config(args.config, _overrides(args.overrides))
        _ensure_data(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / config.name).resolve()
    method = get_method("videoiq")
    stage = method.stage(args.stage)
    given = {"teacher": args.teacher, "stage1": args.stage1}
    inputs = {need: Path(given.get(need) or out / need).resolve() for need in stage.needs if need != "outputs"}
    missing = [f"{need}: {path} (run `python -m searchlab.train {need}` first or pass --{need})"
               for need, path in inputs.items() if not Path(path, "metrics.json").is_file()]
    if missing:
        print("error: missing input artifacts:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 2

    import ray
    import ray.train

    from searchlab.train.launch import run_stage

    if "outputs" in stage.needs and not args.live:
        outputs = out / "stage2_cache"
        print(f"backbone-output cache: {outputs} (built once per stage-1 artifact) ...", flush=True)
        build = method.stage("outputs").build
        assert build is not None
        build(config, inputs, outputs)
        inputs["outputs"] = outputs
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    name = _run_name(args.stage, config, {**{k: str(v) for k, v in inputs.items()}, "live": str(args.live)})
    try:
        result = run_stage(stage, config=config, inputs=inputs, output_dir=out / args.stage, storage_path=out / "ray",
                           name=name, eval_every=args.eval_every, inject_failure_after_epoch=args.fail_after_epoch)
    except ray.train.TrainingFailedError as error:
        print(f"error: {args.stage} failed: {error}\nits checkpoints are in {out / 'ray' / name}; "
              "re-run the same command to resume from the latest one", file=sys.stderr)
        return 1
    scalars = {k: v for k, v in result.metrics.items() if isinstance(v, float)}
    print(f"{args.stage} done: {json.dumps(scalars)}")
    print(f"  artifact:    {result.output_dir}")
    print(f"  checkpoints: {result.run_dir} (re-run the same command to resume)")
    print(f"  tensorboard: tensorboard --logdir {result.log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
