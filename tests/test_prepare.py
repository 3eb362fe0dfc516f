"""`python -m searchlab.data.prepare`: ActivityNet, Kinetics, Mini-Kinetics, Moments in Time and list-file sources on
small fixtures written here (real MP4s plus missing, empty and corrupt files)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from searchlab.data.manifest import read_manifest
from searchlab.data.prepare import main, read_list_file
from searchlab.data.synthetic import class_specs, render_video, write_mp4


def _video(path: Path, frames: int = 6, fps: float = 10.0) -> None:
    pixels = render_video(class_specs(2), np.random.default_rng(frames), classes=[0], num_frames=frames, size=32)
    write_mp4(path, pixels, fps=fps)


def _report(manifest_path: Path) -> dict[str, str]:
    with open(manifest_path.with_name(manifest_path.stem + ".bad_videos.csv"), newline="") as handle:
        return {row["video_id"]: row["reason"] for row in csv.DictReader(handle)}


@pytest.fixture()
def activitynet(tmp_path: Path) -> tuple[Path, Path]:
    videos = tmp_path / "videos"
    database = {
        "aaa": {"subset": "training", "duration": 1.0, "annotations": [{"label": "Surfing", "segment": [0, 1]}]},
        "bbb": {"subset": "training", "duration": 1.0, "annotations": [
            {"label": "Archery", "segment": [0.0, 0.2]}, {"label": "Surfing", "segment": [0.2, 0.9]}]},
        "ccc": {"subset": "validation", "duration": 1.0, "annotations": [{"label": "Archery", "segment": [0, 1]}]},
        "ddd": {"subset": "validation", "duration": 1.0, "annotations": [{"label": "Archery", "segment": [0, 1]}]},
        "eee": {"subset": "training", "duration": 1.0, "annotations": [{"label": "Surfing", "segment": [0, 1]}]},
        "fff": {"subset": "training", "duration": 1.0, "annotations": [{"label": "Surfing", "segment": [0, 1]}]},
        "ggg": {"subset": "testing", "duration": 1.0, "annotations": []},
        "hhh": {"subset": "testing", "duration": 1.0, "annotations": []},
    }
    _video(videos / "v_aaa.mp4", frames=6)
    _video(videos / "sub" / "bbb.mp4", frames=9)  # <id>.<ext> form, in a subfolder
    _video(videos / "v_ccc.mp4", frames=5)
    # ddd is missing; eee is empty; fff is not a video
    (videos / "v_eee.mp4").write_bytes(b"")
    (videos / "v_fff.mkv").write_bytes(b"garbage" * 50)
    annotations = tmp_path / "activity_net.v1-3.min.json"
    annotations.write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    return annotations, videos


def test_activitynet(activitynet: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    annotations, videos = activitynet
    out = tmp_path / "out" / "anet.parquet"
    code = main(["activitynet", "--annotations", str(annotations), "--videos", str(videos),
                 "--out", str(out), "--workers", "2", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    manifest = read_manifest(out, data_root=videos)
    assert manifest.class_names == ("Archery", "Surfing") and manifest.dataset == "activitynet"
    rows = {r["video_id"]: r for r in manifest.rows()}
    assert sorted(rows) == ["aaa", "bbb", "ccc"]
    assert rows["aaa"]["path"] == "v_aaa.mp4" and rows["bbb"]["path"] == "sub/bbb.mp4"
    assert rows["bbb"]["label"] == 1 and rows["bbb"]["labels"] == [0, 1]  # most annotated time wins
    assert rows["ccc"]["split"] == "val" and rows["aaa"]["split"] == "train"
    assert (rows["bbb"]["num_frames"], rows["bbb"]["width"], rows["bbb"]["height"]) == (9, 32, 32)
    assert rows["aaa"]["fps"] == pytest.approx(10.0) and rows["aaa"]["duration"] == pytest.approx(0.6)
    report = _report(out)
    assert report["ddd"].startswith("missing") and report["eee"] == "empty file (0 bytes)"
    assert report["fff"].startswith("unreadable")
    assert "kept 3 video(s) (train 2, val 1)" in printed
    assert "skipped 3: " in printed and "missing 1" in printed and "unreadable 1" in printed
    assert "testing subset: 2 video(s)" in printed


def test_help_of_every_subcommand_runs() -> None:
    for source in ("synthetic", "activitynet", "fcvid", "minisports", "minikinetics", "kinetics", "mit"):
        with pytest.raises(SystemExit) as info:
            main([source, "--help"])
        assert info.value.code == 0
    result = subprocess.run([sys.executable, "-m", "searchlab.data.prepare", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "activitynet" in result.stdout and "minikinetics" in result.stdout


def _kinetics_csvs(root: Path) -> tuple[Path, Path, Path]:
    train, val, test = root / "train.csv", root / "validate.csv", root / "test.csv"
    train.write_text("label,youtube_id,time_start,time_end,split\n"
                     "abseiling,AAAAAAAAAAA,14,24,train\n"
                     '"playing cards",B_BBBBBBBBB,0,10,train\n'
                     "abseiling,CCCCCCCCCCC,5,15,train\n")
    val.write_text("label,youtube_id,time_start,time_end,split\nzumba,DDDDDDDDDDD,30,40,val\n")
    test.write_text("youtube_id,time_start,time_end,split\nEEEEEEEEEEE,0,10,test\n")
    return train, val, test


def test_kinetics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train, val, test = _kinetics_csvs(tmp_path)
    videos = tmp_path / "kinetics"
    _video(videos / "train" / "abseiling" / "AAAAAAAAAAA_000014_000024.mp4")
    _video(videos / "train" / "playing cards" / "B_BBBBBBBBB_000000_000010.mp4")
    _video(videos / "val" / "zumba" / "DDDDDDDDDDD_000030_000040.mp4")
    out = tmp_path / "k.parquet"
    code = main(["kinetics", "--csv", str(train), str(val), str(test), "--videos", str(videos),
                 "--out", str(out), "--workers", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    manifest = read_manifest(out)
    assert manifest.class_names == ("abseiling", "playing cards", "zumba") and not manifest.multi_label
    rows = {r["video_id"]: (r["path"], r["label"], r["split"]) for r in manifest.rows()}
    assert rows == {
        "AAAAAAAAAAA_000014_000024": ("train/abseiling/AAAAAAAAAAA_000014_000024.mp4", 0, "train"),
        "B_BBBBBBBBB_000000_000010": ("train/playing cards/B_BBBBBBBBB_000000_000010.mp4", 1, "train"),
        "DDDDDDDDDDD_000030_000040": ("val/zumba/DDDDDDDDDDD_000030_000040.mp4", 2, "val"),
    }
    assert _report(out) == {"CCCCCCCCCCC_000005_000015": "missing (no such file under --videos)"}
    assert "left out 1 row(s) without a label" in printed and "missing 1" in printed


def test_minikinetics_takes_ids_from_split_files_and_labels_from_kinetics(tmp_path: Path, capsys) -> None:
    train, val, _ = _kinetics_csvs(tmp_path)
    videos = tmp_path / "kinetics"
    _video(videos / "AAAAAAAAAAA_000014_000024.mp4")
    _video(videos / "DDDDDDDDDDD_000030_000040.mp4")
    (tmp_path / "train_ids.txt").write_text("AAAAAAAAAAA\nZZZZZZZZZZZ\n")
    (tmp_path / "val_ids.txt").write_text("DDDDDDDDDDD\n")
    out = tmp_path / "mini.parquet"
    code = main(["minikinetics", "--kinetics-csv", str(train), str(val), "--train-ids", str(tmp_path / "train_ids.txt"),
                 "--val-ids", str(tmp_path / "val_ids.txt"), "--videos", str(videos), "--out", str(out),
                 "--workers", "1", "--no-progress"])
    assert code == 0
    manifest = read_manifest(out)
    assert manifest.class_names == ("abseiling", "zumba")
    assert [(r["video_id"], r["label"], r["split"]) for r in manifest.rows()] == [
        ("AAAAAAAAAAA_000014_000024", 0, "train"), ("DDDDDDDDDDD_000030_000040", 1, "val")]
    assert "not found in the Kinetics CSVs (e.g. ZZZZZZZZZZZ)" in capsys.readouterr().out


def _mit_release(root: Path) -> Path:
    """A tiny Moments in Time release: its CSVs, categories and training/ + validation/ folders."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "moments_categories.txt").write_text("adult+female+singing,0\nblocking,1\ndancing,2\n")
    (root / "trainingSet.csv").write_text(
        "blocking/getty-karate-video-id635808620_4.mp4,blocking,3,0\n"
        "dancing/yt-5of6ffo6-Bw_205.mp4,dancing,2,1\n"
        "dancing/yt-missing_1.mp4,dancing,3,0\n"
        "adult+female+singing/broken_7.mp4,adult+female+singing,3,0\n")
    (root / "validationSet.csv").write_text("blocking/getty-karate-video-id635808620_4.mp4,blocking,3,0\n")
    _video(root / "training" / "blocking" / "getty-karate-video-id635808620_4.mp4", frames=6)
    _video(root / "training" / "dancing" / "yt-5of6ffo6-Bw_205.mp4", frames=9)
    (root / "training" / "adult+female+singing").mkdir(parents=True)
    (root / "training" / "adult+female+singing" / "broken_7.mp4").write_bytes(b"not a video" * 40)
    # the same file name in another split's folder: a different video
    _video(root / "validation" / "blocking" / "getty-karate-video-id635808620_4.mp4", frames=5)
    return root


def test_moments_in_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    release = _mit_release(tmp_path / "Moments_in_Time_Raw")
    out = tmp_path / "mit.parquet"
    code = main(["mit", "--train-csv", str(release / "trainingSet.csv"), "--val-csv", str(release / "validationSet.csv"),
                 "--categories", str(release / "moments_categories.txt"), "--videos", str(release),
                 "--out", str(out), "--workers", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    manifest = read_manifest(out, data_root=release)
    assert manifest.class_names == ("adult+female+singing", "blocking", "dancing") and manifest.dataset == "mit"
    rows = sorted((r["path"], r["label"], r["split"], r["num_frames"]) for r in manifest.rows())
    assert rows == [("training/blocking/getty-karate-video-id635808620_4.mp4", 1, "train", 6),
                    ("training/dancing/yt-5of6ffo6-Bw_205.mp4", 2, "train", 9),
                    ("validation/blocking/getty-karate-video-id635808620_4.mp4", 1, "val", 5)]
    assert sorted(r["video_id"] for r in manifest.rows()) == [path.removesuffix(".mp4") for path, *_ in rows]
    report = _report(out)
    assert report["training/dancing/yt-missing_1"] == "missing (no such file under --videos)"
    assert report["training/adult+female+singing/broken_7"].startswith("unreadable")
    assert "kept 3 video(s) (train 2, val 1)" in printed and "missing 1" in printed and "unreadable 1" in printed


def test_moments_in_time_bad_rows_and_categories_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    release = _mit_release(tmp_path)
    (release / "bad.csv").write_text("dancing/a.mp4,dancing,3,0\nfilename-only.mp4\ndancing/b.mp4,walking,3,0\n"
                                     "../outside.mp4,dancing,3,0\n")
    assert main(["mit", "--train-csv", str(release / "bad.csv"), "--categories", str(release / "moments_categories.txt"),
                 "--videos", str(release), "--out", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s) in the Moments in Time CSVs" in err
    assert f"{release / 'bad.csv'}:2: need `FILENAME,LABEL,...`" in err
    assert f"{release / 'bad.csv'}:3 (dancing/b.mp4): label 'walking' is not in the categories file" in err
    assert f"{release / 'bad.csv'}:4: '../outside.mp4' must be a path inside the split's folder" in err
    (release / "gaps.txt").write_text("blocking,0\ndancing,2\nsinging\n")
    assert main(["mit", "--train-csv", str(release / "trainingSet.csv"), "--categories", str(release / "gaps.txt"),
                 "--videos", str(release), "--out", str(tmp_path / "m.parquet")]) == 2
    assert f"{release / 'gaps.txt'}:3: 'singing' is not `NAME,INDEX`" in capsys.readouterr().err
    assert main(["mit", "--categories", str(release / "moments_categories.txt"), "--videos", str(release),
                 "--out", str(tmp_path / "m.parquet")]) == 2
    assert "give at least one of --train-csv" in capsys.readouterr().err


def test_fcvid_list_files_with_paths_names_and_multi_labels(tmp_path: Path) -> None:
    videos = tmp_path / "fcvid"
    _video(videos / "a" / "one.mp4")
    _video(videos / "two.mp4")
    _video(videos / "three.mp4")
    (tmp_path / "classes.txt").write_text("0 basketball\n1 making cake\n2 dog\n")
    (tmp_path / "train.txt").write_text("# path label\na/one.mp4 0\ntwo 1;2\n")
    (tmp_path / "test.csv").write_text("three.mp4,dog\n")
    out = tmp_path / "fcvid.parquet"
    code = main(["fcvid", "--train", str(tmp_path / "train.txt"), "--val", str(tmp_path / "test.csv"),
                 "--classes", str(tmp_path / "classes.txt"), "--videos", str(videos), "--out", str(out),
                 "--workers", "1", "--no-progress"])
    assert code == 0
    manifest = read_manifest(out)
    assert manifest.class_names == ("basketball", "making cake", "dog") and manifest.multi_label
    assert [(r["video_id"], r["path"], r["labels"], r["split"]) for r in manifest.rows()] == [
        ("one", "a/one.mp4", [0], "train"), ("two", "two.mp4", [1, 2], "train"), ("three", "three.mp4", [2], "val")]


def test_list_file_problems_are_all_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "train.txt").write_text("# id label\na 0\nb 999\n\nc -1\nd\n")
    code = main(["minisports", "--train", str(tmp_path / "train.txt"), "--videos", str(tmp_path / "v"),
                 "--out", str(tmp_path / "m.parquet"), "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ")
    assert "3 problem(s)" in err and "train.txt:3 (b): label '999'" in err
    assert "train.txt:5 (c): label '-1'" in err and "train.txt:6 (d): no label" in err
    assert not (tmp_path / "m.parquet").exists()


@pytest.mark.parametrize(
    ("lines", "classes", "expected"),
    [
        ("a 0\nb dog\n", None, "train.txt:2 (b): label 'dog' is not a class index in [0, 239)"),
        ("a 0\nb 1;x\n", None, "train.txt:2 (b): label 'x' is not a class index in [0, 239)"),
        ("a 0\nb 2.0\n", None, "train.txt:2 (b): label '2.0' is not a class index"),
        ("a dog\nb cat\n", "dog\nbird\n", "train.txt:2 (b): label 'cat' is neither a class index in [0, 2) nor a name"),
        ("a 0\nb 2\n", "dog\nbird\n", "train.txt:2 (b): label '2' is neither a class index in [0, 2)"),
    ],
    ids=["name-without-classes", "one-of-several", "decimal", "unknown-name", "index-out-of-range"],
)
def test_list_labels_that_are_not_classes_are_errors_not_new_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture, lines: str, classes: str | None, expected: str
) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "train.txt").write_text(lines)
    argv = ["fcvid", "--train", str(tmp_path / "train.txt"), "--videos", str(tmp_path / "v"),
            "--out", str(tmp_path / "m.parquet"), "--no-progress"]
    if classes is not None:
        (tmp_path / "classes.txt").write_text(classes)
        argv += ["--classes", str(tmp_path / "classes.txt")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 1 problem(s) in the list files") and expected in err


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"database": 5}, '"database" is a number (5); ActivityNet v1.3 has an object there'),
        ({"database": {"aaa": "training"}}, 'database["aaa"] is a string ("training"); expected an object'),
        ({"database": {"aaa": {"subset": "training", "annotations": {"label": "Surfing"}}}},
         'database["aaa"]["annotations"] is an object ({"label": "Surfing"}); expected a list'),
        ({"database": {"aaa": {"subset": "training", "annotations": [{"label": ["Surfing"], "segment": [0, 1]}]}}},
         'database["aaa"]["annotations"][0]["label"] is a list (["Surfing"]); expected a class name'),
        ({"database": {"aaa": {"subset": "training", "annotations": [{"label": "Surfing", "segment": ["0", 1]}]}}},
         'database["aaa"]["annotations"][0]["segment"] is a list (["0", 1]); expected [START, END] in seconds'),
        ([1, 2], "need a JSON object with 'database'"),
    ],
    ids=["database-number", "entry-string", "annotations-object", "label-list", "segment-text", "top-level-list"],
)
def test_malformed_activitynet_json_exits_2_naming_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture, annotations: object, expected: str
) -> None:
    (tmp_path / "anet.json").write_text(json.dumps(annotations))
    code = main(["activitynet", "--annotations", str(tmp_path / "anet.json"), "--videos", str(tmp_path),
                 "--out", str(tmp_path / "m.parquet"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and expected in err


def test_every_malformed_activitynet_entry_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    database = {
        "aaa": "training",
        "bbb": {"subset": "training", "annotations": {"label": "Surfing"}},
        "ccc": {"subset": "training", "annotations": [{"label": ["Surfing"]}, {"segment": [0, 1]}, 7]},
        "ddd": {"subset": "training", "annotations": [{"label": "Surfing", "segment": [0, 1]}]},
    }
    (tmp_path / "anet.json").write_text(json.dumps({"database": database}))
    assert main(["activitynet", "--annotations", str(tmp_path / "anet.json"), "--videos", str(tmp_path),
                 "--out", str(tmp_path / "m.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"5 problem(s) in {tmp_path / 'anet.json'} (fix these entries or remove them)" in err
    for expected in ('database["aaa"] is', 'database["bbb"]["annotations"] is', '["annotations"][0]["label"] is',
                     'database["ccc"]["annotations"][1] has no "label"', 'database["ccc"]["annotations"][2] is a number'):
        assert expected in err, expected
    assert "ddd" not in err


def test_out_naming_a_folder_is_refused_before_probing(activitynet: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    annotations, videos = activitynet
    folder = tmp_path / "manifests"
    folder.mkdir()
    code = main(["activitynet", "--annotations", str(annotations), "--videos", str(videos), "--out", str(folder),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--out {folder}: is a folder; give the manifest file to write, e.g. {folder / 'manifest.parquet'}" in err
    assert not (tmp_path / "manifests.bad_videos.csv").exists()  # written after probing: it never ran
    (tmp_path / "file").write_text("")
    assert main(["synthetic", "--out", str(tmp_path / "file"), "--no-progress"]) == 2
    assert "is a file; the synthetic set is a folder" in capsys.readouterr().err


def test_non_numeric_kinetics_times_name_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train, val, _ = _kinetics_csvs(tmp_path)
    val.write_text("label,youtube_id,time_start,time_end,split\n\nzumba,DDDDDDDDDDD,30,forty,val\n"
                   "zumba,EEEEEEEEEEE,,10,val\n")
    code = main(["kinetics", "--csv", str(train), str(val), "--videos", str(tmp_path), "--out",
                 str(tmp_path / "k.parquet"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "2 problem(s) in the Kinetics CSVs (fix or remove these rows)" in err
    assert f"{val}:3: time_end 'forty' is not a number of seconds" in err
    assert f"{val}:4: time_start '' is not a number of seconds" in err


def test_bad_inputs_exit_2_with_the_reason(activitynet: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    annotations, videos = activitynet
    (tmp_path / "bad.json").write_text('{"videos": {}}')
    cases = [
        (["activitynet", "--annotations", str(tmp_path / "bad.json"), "--videos", str(videos)], "need a JSON object with 'database'"),
        (["activitynet", "--annotations", str(annotations), "--videos", str(tmp_path / "nope")], "not a folder"),
        (["activitynet", "--annotations", str(annotations), "--videos", str(tmp_path / "out")], "no usable video"),
        (["kinetics", "--csv", str(tmp_path / "absent.csv"), "--videos", str(videos)], "cannot read the list file"),
        (["fcvid", "--videos", str(videos)], "at least one of --train LIST or --val LIST"),
        (["synthetic", "--size", "33", "--frames", "2"], "size=33"),
    ]
    (tmp_path / "out").mkdir()
    for argv, expected in cases:
        code = main([*argv, "--out", str(tmp_path / "out" / "m.parquet"), "--no-progress"])
        assert code == 2, argv
        assert expected in capsys.readouterr().err, argv


def test_read_list_file_formats(tmp_path: Path) -> None:
    (tmp_path / "frames.txt").write_text("videos/x 120 7\n")
    assert read_list_file(tmp_path / "frames.txt") == [{"key": "videos/x", "label": "7", "line": "1", "num_frames": "120"}]
    (tmp_path / "headed.csv").write_text("video_id,label\n# comment\nx,3\n")
    assert read_list_file(tmp_path / "headed.csv") == [{"video_id": "x", "label": "3", "line": "3"}]


def test_unreadable_or_empty_class_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "train.txt").write_text("a 0\n")
    (tmp_path / "empty.txt").write_text("\n")
    for classes, expected in ((tmp_path / "absent.txt", "cannot read the class file"),
                              (tmp_path / "empty.txt", "the class file has no names")):
        assert main(["fcvid", "--train", str(tmp_path / "train.txt"), "--classes", str(classes),
                     "--videos", str(tmp_path), "--out", str(tmp_path / "m.parquet")]) == 2
        assert f"error: {classes}: {expected}" in capsys.readouterr().err


def test_the_ray_probe_path_writes_the_local_manifest(ray_local, activitynet: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """--ray probes in Ray tasks (here the session's local Ray): same manifest and report, byte for byte."""
    import ray

    annotations, videos = activitynet
    outs = {way: tmp_path / way / "anet.parquet" for way in ("local", "ray")}
    common = ["activitynet", "--annotations", str(annotations), "--videos", str(videos), "--no-progress"]
    assert main([*common, "--out", str(outs["local"]), "--workers", "2"]) == 0
    assert "probed" not in capsys.readouterr().out
    assert main([*common, "--out", str(outs["ray"]), "--ray", "auto"]) == 0
    printed = capsys.readouterr().out
    assert outs["ray"].read_bytes() == outs["local"].read_bytes()
    assert _report(outs["ray"]) == _report(outs["local"])
    # the 5 videos found (3 good, 1 empty, 1 corrupt; the missing one is never probed) on the one node
    assert f"probed 5 video(s) on node {ray.get_runtime_context().get_node_id()}\n" in printed


def test_the_ray_probe_path_refuses_a_node_that_does_not_see_the_videos(ray_local, tmp_path: Path) -> None:
    from searchlab.data.prepare import PrepareError
    from searchlab.ray_probe import probe_on_ray

    absent = tmp_path / "not-mounted"
    with pytest.raises(PrepareError, match=f"does not see the videos folder {absent}: mount the shared storage"):
        probe_on_ray([str(absent / "a.mp4")], root=str(absent), address="auto", progress=False)


def test_ray_chunks_are_a_few_per_cpu_and_capped() -> None:
    from searchlab.ray_probe import MAX_CHUNK, chunk_size_for

    assert chunk_size_for(12, 6.0) == 1  # a small set: one video per task, every node gets some
    assert chunk_size_for(1000, 8.0) == 32  # 4 chunks per CPU
    assert chunk_size_for(1_000_000, 8.0) == MAX_CHUNK
    assert chunk_size_for(5, 0.0) == 2  # no CPU reported yet: as if one


def test_the_prepare_job_refuses_folders_its_driver_cannot_see(activitynet: tuple[Path, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    """jobs/prepare.py checks the folders before it joins any cluster (exit 2, as prepare's own refusals)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prepare_job", Path(__file__).parents[1] / "jobs" / "prepare.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    annotations, videos = activitynet
    common = ["activitynet", "--annotations", str(annotations), "--no-progress"]
    assert job.main([*common, "--videos", str(tmp_path / "absent"), "--out", str(tmp_path / "no" / "m.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"--videos {tmp_path / 'absent'}: no such folder on the job's driver" in err
    assert f"its folder {tmp_path / 'no'} does not exist on the job's driver" in err
    assert job.main([*common, "--videos", "videos", "--out", str(tmp_path / "m.parquet")]) == 2
    assert "--videos videos: give an absolute path" in capsys.readouterr().err
    assert job.main(["synthetic", "--out", str(tmp_path / "syn")]) == 2
    assert "the synthetic source probes no videos" in capsys.readouterr().err
    assert not (tmp_path / "syn").exists()
