"""CLI: ``python -m searchlab.train STAGE --config spaces/demo.yaml [--set k=v ...] [--item I]``.

Trains one stage of the configuration's method (VideoIQ: teacher, stage1, stage2; AR-Net: backbone
with ``--item`` = the resolution's index, joint, finetune). Artifacts go to ``--out`` (default
``runs/<config name>``): ``<out>/<stage>`` (``<out>/<stage>-<item>`` for a stage trained per item);
Ray runs under ``<out>/ray/<stage>-<hash>``, the hash covering the configuration and the input
artifacts, so re-running the same command resumes an interrupted run while a changed configuration
starts a fresh one. A stage reads the artifacts of the stages it needs from ``<out>/<need>`` (or
``--input NEED=DIR``); a build step it needs (VideoIQ's stage-2 inputs) is built once under
``<out>/<need>`` unless ``--live`` makes the stage compute it itself. Configuration errors exit
with code 2.

    python -m searchlab.train teacher --config spaces/demo.yaml
    python -m searchlab.train backbone --item 0 --config spaces/demo-arnet.yaml
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
from searchlab.data_check import DataMissing, ensure_data
from searchlab.methods import Method, Stage, get_method
from searchlab.methods._keys import fan_out_items
from searchlab.cli import command_parser

__all__ = ["main"]


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = command_parser("searchlab.train", description=(
        "Train one stage of a sweep file's method by hand (its base configuration), resumable: re-running the "
        "same command continues from the latest checkpoint."),
        examples=["python -m searchlab.train teacher --config spaces/demo.yaml",
                  "python -m searchlab.train backbone --item 0 --config spaces/demo-arnet.yaml --set arnet.backbone_stage.epochs=2"])
    parser.add_argument("stage", help="a stage of the configuration's method, e.g. teacher or backbone")
    parser.add_argument("--config", required=True, help="sweep file whose `base` is the trial configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key, value parsed as YAML (repeatable)")
    parser.add_argument("--out", help="output folder (default: runs/<config name>)")
    parser.add_argument("--input", dest="inputs", action="append", default=[], metavar="NEED=DIR",
                        help="artifact folder of a stage this one needs (default: <out>/<need>; repeatable)")
    parser.add_argument("--item", type=int, default=None, help="the item of a stage trained per item (0-based)")
    parser.add_argument("--live", action="store_true", help="compute an optional build step's result live, no cache")
    parser.add_argument("--eval-every", type=int, default=0, help="also evaluate every N epochs")
    # fault injection for the resumption tests: not for users, so not in the help
    parser.add_argument("--fail-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
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


def _stage_and_item(method: Method, name: str, item: int | None, config: TrialConfig) -> tuple[Stage, int | None]:
    trained = [stage.name for stage in method.stages if stage.loop is not None]
    if name not in trained:
        raise ValueError(f"{method.name} has no stage {name!r} to train; its stages: {', '.join(trained)}")
    stage = method.stage(name)
    if stage.fan_out is None:
        if item is not None:
            raise ValueError(f"stage {name} is trained once; drop --item")
        return stage, None
    count = len(fan_out_items(stage, config.model_dump(mode="json")))
    if item is None or not 0 <= item < count:
        raise ValueError(f"stage {name} is trained once per item of {', '.join(stage.fan_out.over)}: give --item "
                         f"0..{count - 1}")
    return stage, item


def _given_inputs(pairs: Sequence[str]) -> dict[str, Path]:
    given = {}
    for pair in pairs:
        need, sep, folder = pair.partition("=")
        if not sep or not need or not folder:
            raise ValueError(f"--input {pair!r}: write NEED=DIR, e.g. --input teacher=runs/demo/teacher")
        given[need] = Path(folder).resolve()
    return given


def _default_input(stage: Stage, *, out: Path, config: TrialConfig) -> Path | list[Path]:
    """Where this CLI put ``stage``'s artifact: ``<out>/<stage>``, or one folder per item."""
    if stage.fan_out is None:
        return out / stage.name
    return [out / f"{stage.name}-{i}" for i in range(len(fan_out_items(stage, config.model_dump(mode="json"))))]


def _run_name(stage: str, config: TrialConfig, inputs: dict[str, str | None]) -> str:
    payload = json.dumps({"config": config.model_dump(mode="json"), "inputs": inputs}, sort_keys=True)
    return f"{stage}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        config = load_trial_config(args.config, _overrides(args.overrides))
        ensure_data(config.data, generate=True)
    except (ConfigError, DataMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / config.name).resolve()
    method = get_method(config.method)
    try:
        stage, item = _stage_and_item(method, args.stage, args.item, config)
        given = _given_inputs(args.inputs)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    builds = [need for need in stage.needs if method.stage(need).build is not None and need not in given
              and not (args.live and need in stage.optional)]
    inputs: dict[str, Path | list[Path]] = {}
    for need in stage.needs:
        if need in given:
            inputs[need] = given[need]
        elif need not in builds and not (args.live and need in stage.optional):
            inputs[need] = _default_input(method.stage(need), out=out, config=config)
    folders = [(need, folder) for need, value in inputs.items()
               for folder in (value if isinstance(value, list) else [value])]
    missing = [f"{need}: {folder} (run `python -m searchlab.train {need}` first or pass --input {need}=DIR)"
               for need, folder in folders if not Path(folder, "metrics.json").is_file()]
    if missing:
        print("error: missing input artifacts:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 2

    import ray
    import ray.train

    from searchlab.train.launch import run_stage

    for need in builds:
        build_stage = method.stage(need)
        assert build_stage.build is not None
        print(f"{build_stage.description}: building {out / need} ...", flush=True)
        build_stage.build(config, {n: inputs[n] for n in build_stage.needs}, out / need)
        inputs[need] = out / need
    if not ray.is_initialized():
        ray.init(include_dashboard=False)
    folder = out / (stage.name if item is None else f"{stage.name}-{item}")
    name = _run_name(folder.name, config, {**{k: str(v) for k, v in inputs.items()}, "live": str(args.live)})
    try:
        result = run_stage(stage, config=config, inputs=inputs, output_dir=folder, storage_path=out / "ray",
                           name=name, item=item, eval_every=args.eval_every,
                           inject_failure_after_epoch=args.fail_after_epoch)
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
