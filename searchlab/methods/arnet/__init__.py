"""AR-Net (METHODS.md §2) as plain PyTorch: per-frame resolution (and skipping) chosen by a policy.

Config section ``ARNetConfig``; network ``ARNet`` (``build_model``/``load_model`` from the section
and artifacts); loss ``arnet_loss``; cost model ``arnet_costs``; three Ray-free stage loops
``backbone_loop`` → ``joint_loop`` → ``finetune_loop`` (``stage_common`` documents their
``loop_config``); ``evaluate_inference`` measures the recorded figures.
"""

from searchlab.methods.arnet.backbone_stage import TSNClassifier, backbone_loop, backbone_step
from searchlab.methods.arnet.build import (
    BACKBONE_FILE,
    MODEL_FILE,
    build_backbone,
    build_model,
    build_policy,
    load_backbone_artifact,
    load_model,
)
from searchlab.methods.arnet.config import (
    OFFICIAL_ACTION_WEIGHTS,
    PAPER_FINETUNE_TAU0,
    PAPER_JOINT_RATE,
    ARNetConfig,
    BackboneRecipe,
    FinetuneRecipe,
    JointRecipe,
    StageRecipe,
    action_names,
    paper_starting_point,
)
from searchlab.methods.arnet.costs import (
    ARNetCosts,
    arnet_costs,
    backbone_gflops,
    memory_mb,
    module_gflops,
    policy_gflops_per_frame,
    resolution_gflops,
)
from searchlab.methods.arnet.decisions import ActionLayout, Decisions, run_decisions
from searchlab.methods.arnet.dynamic_stages import dynamic_step, finetune_loop, freeze_policy, joint_loop
from searchlab.methods.arnet.evaluate import arnet_price, evaluate_inference, inference_metrics
from searchlab.methods.arnet.losses import action_usage, arnet_loss, efficiency_weights
from searchlab.methods.arnet.model import RESIZE_MODES, ARNet, fuse_logits, resize_frames
from searchlab.methods.arnet.optim import constant_scheduler, make_optimizer, parameter_groups

__all__ = [
    "ARNet",
    "ARNetConfig",
    "ARNetCosts",
    "ActionLayout",
    "BACKBONE_FILE",
    "BackboneRecipe",
    "Decisions",
    "FinetuneRecipe",
    "JointRecipe",
    "MODEL_FILE",
    "OFFICIAL_ACTION_WEIGHTS",
    "PAPER_FINETUNE_TAU0",
    "PAPER_JOINT_RATE",
    "RESIZE_MODES",
    "StageRecipe",
    "TSNClassifier",
    "action_names",
    "action_usage",
    "arnet_costs",
    "arnet_loss",
    "arnet_price",
    "backbone_gflops",
    "backbone_loop",
    "backbone_step",
    "build_backbone",
    "build_model",
    "build_policy",
    "constant_scheduler",
    "dynamic_step",
    "efficiency_weights",
    "evaluate_inference",
    "finetune_loop",
    "freeze_policy",
    "fuse_logits",
    "inference_metrics",
    "joint_loop",
    "load_backbone_artifact",
    "load_model",
    "make_optimizer",
    "memory_mb",
    "module_gflops",
    "paper_starting_point",
    "parameter_groups",
    "policy_gflops_per_frame",
    "resize_frames",
    "resolution_gflops",
    "run_decisions",
]
