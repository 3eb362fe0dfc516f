"""Video data for searchlab: manifests, clip loading, the synthetic set, data-set preparation.

Plain PyTorch/pyarrow/decord; no Ray and no Optuna (docs/architecture.md).
"""

from searchlab.data.manifest import (
    MANIFEST_SCHEMA,
    SPLITS,
    Manifest,
    ManifestError,
    build_manifest,
    read_manifest,
    validate_manifest,
    write_manifest,
)
from searchlab.data.synthetic import ClassSpec, SyntheticConfig, class_specs, generate_synthetic, write_mp4
from searchlab.data.video import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataFailureError,
    EvalClipTransform,
    FailureStats,
    TrainClipTransform,
    VideoClipDataset,
    clip_indices,
    crop_offsets,
    dense_indices,
    tsn_indices,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MANIFEST_SCHEMA",
    "SPLITS",
    "ClassSpec",
    "DataFailureError",
    "EvalClipTransform",
    "FailureStats",
    "Manifest",
    "ManifestError",
    "SyntheticConfig",
    "TrainClipTransform",
    "VideoClipDataset",
    "build_manifest",
    "class_specs",
    "clip_indices",
    "crop_offsets",
    "dense_indices",
    "generate_synthetic",
    "read_manifest",
    "tsn_indices",
    "validate_manifest",
    "write_manifest",
    "write_mp4",
]
