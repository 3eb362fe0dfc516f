"""Is the sweep's data on disk? Generate the embedded synthetic set, or say how to prepare it."""

from __future__ import annotations

from pathlib import Path

from searchlab.config import DataConfig


class DataMissing(RuntimeError):
    """The manifest is not on disk (and cannot be generated here) or is not usable: the message says
    how to make it or what to fix."""


def check_manifest(data: DataConfig) -> None:
    """Read the manifest as every stage reads it (rows, a train and a val split), so that a sweep with
    unusable data stops before it starts any trial."""
    from searchlab.data.manifest import ManifestError
    from searchlab.train.loader import load_manifest

    try:
        load_manifest(data)
    except ManifestError as error:
        raise DataMissing(str(error)) from None


def ensure_data(data: DataConfig, *, generate: bool) -> Path:
    """Return the manifest path, generating the synthetic set when configured and allowed.

    A configured synthetic set is (re)generated whenever its knobs changed: `generate_synthetic`
    returns at once when the folder already holds a set made with the same knobs.
    """
    manifest = Path(data.manifest)
    if manifest.is_file() and (data.synthetic is None or not generate):
        return manifest
    if data.synthetic is not None:
        from searchlab.data.synthetic import MANIFEST_NAME, generate_synthetic

        if manifest.name != MANIFEST_NAME:
            raise DataMissing(
                f"{manifest} does not exist, and the synthetic set is always written to <folder>/{MANIFEST_NAME}; "
                f"set data.manifest to {manifest.with_name(MANIFEST_NAME)}"
            )
        if not generate:
            raise DataMissing(f"{manifest} does not exist yet; the sweep will generate the synthetic set there")

        knobs = data.synthetic
        generate_synthetic(
            manifest.parent, num_classes=knobs.classes, train_per_class=knobs.train_per_class,
            val_per_class=knobs.val_per_class, num_frames=knobs.frames, fps=knobs.fps, size=knobs.size,
            seed=knobs.seed, multi_label=knobs.multi_label, fine_contrast=knobs.fine_contrast,
        )
        return manifest
    videos = Path(data.root) if data.root else manifest.parent
    # prepare writes paths relative to --videos; the sweep reads them relative to data.root (default:
    # the manifest's folder), so the two must name the same folder.
    root_note = "" if data.root else " (--videos is searched recursively; to use another folder set data.root to it)"
    raise DataMissing(
        f"the {data.source} data set is not prepared: {manifest} does not exist.\n"
        f"  Prepare it with `python -m searchlab.data.prepare {data.source} ... --videos {videos} --out {manifest}`"
        f"{root_note}\n"
        f"  (see `python -m searchlab.data.prepare {data.source} --help` and README 'Preparing data sets'),\n"
        "  or point data.manifest in the sweep file at an existing manifest."
    )
