"""AR-Net (METHODS.md §2) as plain PyTorch: per-frame resolution (and skipping) chosen by a policy.

Config section ``ARNetConfig``; network ``ARNet`` (``build_model``/``load_model`` from the section
and artifacts); loss ``arnet_loss``; cost model ``arnet_costs``; three Ray-free stage loops
``backbone_loop`` → ``joint_loop`` → ``finetune_loop`` (``stage_common`` documents their
``loop_config``); ``evaluate_inference`` measures the recorded figures.

Importing this package imports nothing but itself: ``searchlab.config`` reads the section model
(``searchlab.methods.arnet.config``), and the stage modules import ``searchlab.config``, so the names
below are loaded from their modules on first use (PEP 562). The method's declaration for the
registry is ``searchlab.methods.arnet.method.ARNET``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "ARNet": "searchlab.methods.arnet.model",
    "ARNetConfig": "searchlab.methods.arnet.config",
    "ARNetCosts": "searchlab.methods.arnet.costs",
    "ActionLayout": "searchlab.methods.arnet.decisions",
    "BACKBONE_FILE": "searchlab.methods.arnet.build",
    "BackboneRecipe": "searchlab.methods.arnet.config",
    "Decisions": "searchlab.methods.arnet.decisions",
    "FinetuneRecipe": "searchlab.methods.arnet.config",
    "JointRecipe": "searchlab.methods.arnet.config",
    "MODEL_FILE": "searchlab.methods.arnet.build",
    "OFFICIAL_ACTION_WEIGHTS": "searchlab.methods.arnet.config",
    "PAPER_FINETUNE_TAU0": "searchlab.methods.arnet.config",
    "PAPER_JOINT_RATE": "searchlab.methods.arnet.config",
    "RESIZE_MODES": "searchlab.methods.arnet.model",
    "StageRecipe": "searchlab.methods.arnet.config",
    "TSNClassifier": "searchlab.methods.arnet.backbone_stage",
    "action_names": "searchlab.methods.arnet.config",
    "action_usage": "searchlab.methods.arnet.losses",
    "arnet_costs": "searchlab.methods.arnet.costs",
    "arnet_loss": "searchlab.methods.arnet.losses",
    "arnet_price": "searchlab.methods.arnet.evaluate",
    "backbone_gflops": "searchlab.methods.arnet.costs",
    "backbone_loop": "searchlab.methods.arnet.backbone_stage",
    "backbone_step": "searchlab.methods.arnet.backbone_stage",
    "build_backbone": "searchlab.methods.arnet.build",
    "build_model": "searchlab.methods.arnet.build",
    "build_policy": "searchlab.methods.arnet.build",
    "constant_scheduler": "searchlab.methods.arnet.optim",
    "dynamic_step": "searchlab.methods.arnet.dynamic_stages",
    "efficiency_weights": "searchlab.methods.arnet.losses",
    "evaluate_inference": "searchlab.methods.arnet.evaluate",
    "finetune_loop": "searchlab.methods.arnet.dynamic_stages",
    "freeze_policy": "searchlab.methods.arnet.dynamic_stages",
    "fuse_logits": "searchlab.methods.arnet.model",
    "inference_metrics": "searchlab.methods.arnet.evaluate",
    "joint_loop": "searchlab.methods.arnet.dynamic_stages",
    "load_backbone_artifact": "searchlab.methods.arnet.build",
    "load_model": "searchlab.methods.arnet.build",
    "make_optimizer": "searchlab.methods.arnet.optim",
    "memory_mb": "searchlab.methods.arnet.costs",
    "module_gflops": "searchlab.methods.arnet.costs",
    "paper_starting_point": "searchlab.methods.arnet.config",
    "parameter_groups": "searchlab.methods.arnet.optim",
    "policy_gflops_per_frame": "searchlab.methods.arnet.costs",
    "resize_frames": "searchlab.methods.arnet.model",
    "resolution_gflops": "searchlab.methods.arnet.costs",
    "run_decisions": "searchlab.methods.arnet.decisions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
