"""searchlab.train: VideoIQ's stages (teacher, stage1, stage2) as Ray Train jobs.

Entry points: ``searchlab.train.launch.run_stage`` (one stage, resumable, publishes an artifact),
``searchlab.train.backbone_cache.build_backbone_outputs`` (stage-2 inputs cached per stage-1
artifact) and the CLI ``python -m searchlab.train``. Submodules are imported on demand so that
the Ray-free parts (losses, metrics) do not pull in Ray.
"""
