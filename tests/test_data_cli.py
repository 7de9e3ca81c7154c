"""``plsc data extract | pack | convert`` through the CLI."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner, Result

from plsc_cli.cli.app import app
from plsc_cli.data.recordio import RecordIOReader, unpack_payload
from tests.conftest import shared_path
from tests.data_helpers import jpeg_bytes, png_bytes, write_im2rec
from tests.test_safe_pickle import RunsCommand, malicious_verification_pickle


def run_cli(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, result.output


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """Check exit code 1 and a single stderr line that contains every fragment."""
    assert result.exit_code == 1, result.output
    # Count raw lines, blank ones included: stderr must be the error line only.
    lines = result.stderr.splitlines()
    assert len(lines) == 1, repr(result.stderr)
    assert lines[0].startswith("plsc: error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def read_label_txt(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        name, label = line.split("\t")
        rows.append((name, int(label)))
    return rows


def identity_labels(rec_dir: Path) -> dict[int, int]:
    """Map each image key to its class using the identity records only."""
    labels = {}
    with RecordIOReader(rec_dir / "train.rec", rec_dir / "train.idx") as reader:
        header, _ = unpack_payload(reader.read(0))
        image_end, identity_end = int(header.label[0]), int(header.label[1])
        for class_id, key in enumerate(range(image_end, identity_end)):
            identity, _ = unpack_payload(reader.read(key))
            for image_key in range(int(identity.label[0]), int(identity.label[1])):
                labels[image_key] = class_id
    return labels


def record_images(rec_dir: Path) -> dict[int, bytes]:
    with RecordIOReader(rec_dir / "train.rec", rec_dir / "train.idx") as reader:
        return {key: unpack_payload(reader.read(key))[1] for key in reader.keys}


@pytest.fixture
def friends(tmp_path: Path) -> Path:
    """A writable copy of friends112 with a verification set beside it."""
    source = shared_path("data", "rec", "friends112")
    folder = tmp_path / "friends112"
    folder.mkdir()
    for name in ("train.rec", "train.idx", "property"):
        shutil.copyfile(source / name, folder / name)
    lfw = shared_path("data", "verification", "small_lfw.bin")
    shutil.copyfile(lfw, folder / "small_lfw.bin")
    return folder


def test_extract_friends112(friends: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(run_cli("data", "extract", "--root-dir", friends, "-o", out))
    rows = read_label_txt(out / "label.txt")
    assert len(rows) == 245
    assert len({label for _, label in rows}) == 6
    expected_labels = identity_labels(friends)
    images = record_images(friends)
    for name, label in rows:
        key = int(Path(name).stem)
        assert name == f"images/{key:08d}.jpg"
        assert label == expected_labels[key], name
        assert (out / name).read_bytes() == images[key], name
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["images"] == 245
    assert summary["classes"] == 6
    assert summary["images_per_class"] == {"min": 39, "median": 40.5, "max": 44}
    assert summary["label_mismatches"] == 0
    assert (out / "small_lfw.bin").read_bytes() == (
        friends / "small_lfw.bin"
    ).read_bytes()


def test_extract_reencode_pixels(friends: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(
        run_cli("data", "extract", "--root-dir", friends, "-o", out, "--reencode")
    )
    images = record_images(friends)
    worst = 0.0
    for name, _ in read_label_txt(out / "label.txt"):
        written = (out / name).read_bytes()
        record = images[int(Path(name).stem)]
        assert written[:3] == b"\xff\xd8\xff"
        assert written != record
        a = cv2.imdecode(np.frombuffer(written, np.uint8), cv2.IMREAD_COLOR)
        b = cv2.imdecode(np.frombuffer(record, np.uint8), cv2.IMREAD_COLOR)
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        # JPEG quality 100 keeps pixels within a few levels of its input.
        assert diff.mean() < 1.0, name
        assert diff.max() <= 16, name
        worst = max(worst, float(diff.mean()))
    assert worst > 0


def test_extract_workers_resume(friends: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(
        run_cli("data", "extract", "--root-dir", friends, "-o", out, "--workers", "2")
    )
    first_labels = (out / "label.txt").read_bytes()
    images_dir = out / "images"
    # Simulate an interruption: some images and label.txt missing, a partial file.
    removed = sorted(images_dir.iterdir())[100:110]
    for path in removed:
        path.unlink()
    (out / "label.txt").unlink()
    (images_dir / ".00000101.jpg.4242.tmp").write_bytes(b"\xff\xd8partial")
    kept_stats = {
        p.name: p.stat() for p in images_dir.iterdir() if not p.name.startswith(".")
    }

    assert_ok(
        run_cli("data", "extract", "--root-dir", friends, "-o", out, "--workers", "2")
    )
    assert (out / "label.txt").read_bytes() == first_labels
    assert sorted(p.name for p in images_dir.iterdir()) == sorted(
        [*kept_stats, *(p.name for p in removed)]
    )
    for name, before in kept_stats.items():
        after = (images_dir / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    images = record_images(friends)
    for path in removed:
        assert path.read_bytes() == images[int(path.stem)]
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["written"] == 10
    assert summary["skipped_existing"] == 235

    # A rerun of a finished extraction rewrites neither images nor label.txt.
    finished = {
        p: p.stat().st_mtime_ns for p in [*images_dir.iterdir(), out / "label.txt"]
    }
    assert_ok(run_cli("data", "extract", "--root-dir", friends, "-o", out))
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, path


def test_extract_rejects_other_reencode_setting(friends: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert_ok(run_cli("data", "extract", "--root-dir", friends, "-o", out))
    result = run_cli("data", "extract", "--root-dir", friends, "-o", out, "--reencode")
    assert result.exit_code == 2
    assert "--reencode" in result.stderr


def test_extract_im2rec_png(tmp_path: Path) -> None:
    records = [
        (7, [3.0, 0.25, 1.0], png_bytes(0)),
        (1000, [0.0, 5.0], png_bytes(1)),
        (42, 2.0, jpeg_bytes(2)),
        (3, [1.0], png_bytes(3)),
        (0, [3.0, 9.0], png_bytes(4)),
    ]
    root = write_im2rec(tmp_path / "im2rec", records)
    out = tmp_path / "out"
    assert_ok(run_cli("data", "extract", "--root-dir", root, "-o", out))
    rows = read_label_txt(out / "label.txt")
    assert rows == [
        ("images/00000007.png", 3),
        ("images/00001000.png", 0),
        ("images/00000042.jpg", 2),
        ("images/00000003.png", 1),
        ("images/00000000.png", 3),
    ]
    for (name, _), (_, _, image) in zip(rows, records, strict=True):
        assert (out / name).read_bytes() == image
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["layout"] == "im2rec"
    assert summary["classes"] == 4


def test_pack_extract_round_trip(tmp_path: Path) -> None:
    images_dir = tmp_path / "ds" / "images"
    images_dir.mkdir(parents=True)
    lines = []
    expected = []
    for i in range(12):
        label = i % 4
        data = png_bytes(i) if i % 3 == 0 else jpeg_bytes(i)
        name = f"img{i}.{'png' if i % 3 == 0 else 'jpg'}"
        (images_dir / name).write_bytes(data)
        lines.append(f"images/{name}\t{label}\n")
        expected.append((label, data))
    (tmp_path / "ds" / "label.txt").write_text("".join(lines))

    rec = tmp_path / "rec"
    assert_ok(
        run_cli(
            "data", "pack", "--image-dir", tmp_path / "ds",
            "--label-file", tmp_path / "ds" / "label.txt", "-o", rec,
        )
    )  # fmt: skip
    assert (rec / "property").read_text() == "4,112,112\n"
    out = tmp_path / "out"
    assert_ok(run_cli("data", "extract", "--root-dir", rec, "-o", out))
    rows = read_label_txt(out / "label.txt")
    got = [(label, (out / name).read_bytes()) for name, label in rows]
    # pack sorts images by label, keeping file order within a class.
    assert got == sorted(expected, key=lambda item: item[0])
    assert identity_labels(rec) == {i + 1: label for i, (label, _) in enumerate(got)}
    # The packed file extracts back to identical bytes a second time.
    rec2, out2 = tmp_path / "rec2", tmp_path / "out2"
    assert_ok(
        run_cli(
            "data", "pack", "--image-dir", out,
            "--label-file", out / "label.txt", "-o", rec2,
        )
    )  # fmt: skip
    assert (rec2 / "train.rec").read_bytes() == (rec / "train.rec").read_bytes()
    assert (rec2 / "train.idx").read_bytes() == (rec / "train.idx").read_bytes()
    assert_ok(run_cli("data", "extract", "--root-dir", rec2, "-o", out2))
    assert (out2 / "label.txt").read_bytes() == (out / "label.txt").read_bytes()


def test_pack_identity_folders(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    for name, count in [("Bob", 2), ("alice", 3), ("Carol", 1)]:
        (gallery / name).mkdir(parents=True)
        for i in range(count):
            (gallery / name / f"{i}.jpg").write_bytes(jpeg_bytes(i, size=64))
    (gallery / "Bob" / "notes.txt").write_text("not an image")
    rec = tmp_path / "rec"
    assert_ok(run_cli("data", "pack", "--image-dir", gallery, "-o", rec))
    assert (rec / "classes.txt").read_text() == "0\tBob\n1\tCarol\n2\talice\n"
    assert (rec / "property").read_text() == "3,64,64\n"
    labels = identity_labels(rec)
    assert sorted(labels.values()) == [0, 0, 1, 2, 2, 2]


def test_convert_round_trip_folder(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    originals = {
        "a.jpg": jpeg_bytes(0),
        "b.png": png_bytes(1),
        "sub/c.jpg": jpeg_bytes(2),
    }
    for name, data in originals.items():
        (images / name).write_bytes(data)
    bins, back = tmp_path / "bins", tmp_path / "back"
    assert_ok(
        run_cli("data", "convert", "--mode", "image2bin",
                "--image-path", images, "--bin-path", bins)
    )  # fmt: skip
    assert sorted(str(p.relative_to(bins)) for p in bins.rglob("*.bin")) == [
        "a.bin",
        "b.bin",
        "sub/c.bin",
    ]
    assert_ok(
        run_cli("data", "convert", "--mode", "bin2image",
                "--image-path", back, "--bin-path", bins)
    )  # fmt: skip
    for name, data in originals.items():
        assert (back / name).read_bytes() == data


def test_convert_single_file_and_legacy_options(tmp_path: Path) -> None:
    image = tmp_path / "face.jpg"
    image.write_bytes(jpeg_bytes(5))
    assert_ok(
        run_cli("data", "convert", "--mode=image2bin",
                "--image_path", image, "--bin_path", tmp_path / "face.bin")
    )  # fmt: skip
    raw = (tmp_path / "face.bin").read_bytes()
    key_length = int.from_bytes(raw[:4], "little")
    assert raw[4 : 4 + key_length] == b"face.jpg"
    value_length = int.from_bytes(raw[4 + key_length : 8 + key_length], "little")
    assert pickle.loads(raw[8 + key_length :]) == image.read_bytes()
    assert len(raw) == 8 + key_length + value_length
    assert_ok(
        run_cli("data", "convert", "--mode", "bin2image",
                "--image-path", tmp_path / "copy.jpg",
                "--bin-path", tmp_path / "face.bin")
    )  # fmt: skip
    assert (tmp_path / "copy.jpg").read_bytes() == image.read_bytes()


def test_convert_key_cannot_escape(tmp_path: Path) -> None:
    from plsc_cli.data.kvbin import write_kv_bin

    bins = tmp_path / "bins"
    bins.mkdir()
    write_kv_bin(bins / "x.bin", "../../escaped.jpg", jpeg_bytes(0))
    out = tmp_path / "deep" / "out"
    assert_ok(
        run_cli("data", "convert", "--mode", "bin2image",
                "--image-path", out, "--bin-path", bins)
    )  # fmt: skip
    assert (out / "escaped.jpg").is_file()
    assert not (tmp_path / "escaped.jpg").exists()


def test_malicious_kv_bin_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    value = pickle.dumps(RunsCommand(marker))
    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "evil.bin").write_bytes(
        (5).to_bytes(4, "little") + b"a.jpg" + len(value).to_bytes(4, "little") + value
    )
    result = run_cli(
        "data", "convert", "--mode", "bin2image",
        "--image-path", tmp_path / "out", "--bin-path", bins,
    )  # fmt: skip
    assert_one_line_error(result, "evil.bin", "posix.system")
    assert not marker.exists()
    assert not (tmp_path / "out" / "a.jpg").exists()


def test_malicious_verification_set_stops_extract(
    friends: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    (friends / "lfw.bin").write_bytes(malicious_verification_pickle(marker))
    out = tmp_path / "out"
    result = run_cli("data", "extract", "--root-dir", friends, "-o", out)
    assert_one_line_error(result, "lfw.bin", "rejected pickle global")
    assert not marker.exists()
    assert not (out / "lfw.bin").exists()
    assert not (out / "label.txt").exists()


def _truncate_in_record(root: Path) -> None:
    data = (root / "train.rec").read_bytes()
    (root / "train.rec").write_bytes(data[:-100])


def _bad_magic(root: Path) -> None:
    with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
        offset = reader.offset(30)
    data = bytearray((root / "train.rec").read_bytes())
    data[offset] ^= 0xFF
    (root / "train.rec").write_bytes(bytes(data))


def _offset_past_end(root: Path) -> None:
    lines = (root / "train.idx").read_text().splitlines()
    key, _ = lines[30].split("\t")
    lines[30] = f"{key}\t{10**9}"
    (root / "train.idx").write_text("\n".join(lines) + "\n")


def _missing_idx(root: Path) -> None:
    (root / "train.idx").unlink()


@pytest.mark.parametrize(
    ("corrupt", "fragments"),
    [
        (_truncate_in_record, ["train.rec: record 39 at byte", "truncated"]),
        (_bad_magic, ["train.rec: record 30 at byte", "bad magic"]),
        (_offset_past_end, ["train.rec: record 30 at byte 1000000000", "past the end"]),
        (_missing_idx, ["index file not found", "train.idx"]),
    ],
    ids=["truncated", "bad-magic", "offset-past-end", "missing-idx"],
)
def test_extract_corrupt_rec(
    tmp_path: Path, corrupt: object, fragments: list[str]
) -> None:
    records = [(k, float(k % 3), jpeg_bytes(k, size=32)) for k in range(40)]
    root = write_im2rec(tmp_path / "rec", records)
    corrupt(root)  # type: ignore[operator]
    out = tmp_path / "out"
    result = run_cli("data", "extract", "--root-dir", root, "-o", out)
    assert_one_line_error(result, *fragments)
    assert not (out / "label.txt").exists()
    leftovers = [p.name for p in (out / "images").glob(".*")] if out.exists() else []
    assert leftovers == []


@pytest.mark.parametrize("workers", [1, 2])
def test_extract_truncated_mid_run_leaves_whole_files(
    tmp_path: Path, workers: int
) -> None:
    records = [(k, 0.0, jpeg_bytes(k, size=32)) for k in range(600)]
    root = write_im2rec(tmp_path / "rec", records)
    # Cut the file inside the image of the last record: its label still reads,
    # so the failure comes after 599 images were written.
    with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
        cut = reader.offset(599) + 40
    os.truncate(root / "train.rec", cut)
    with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
        assert reader.read_header(599).label.tolist() == [0.0]
    out = tmp_path / "out"
    result = run_cli(
        "data", "extract", "--root-dir", root, "-o", out, "--workers", str(workers)
    )  # fmt: skip
    assert_one_line_error(result, "record 599", "truncated")
    written = sorted((out / "images").iterdir())
    names = [p.name for p in written]
    if workers == 1:
        assert names == [f"{k:08d}.jpg" for k in range(599)]
    else:
        # Other workers are stopped mid-chunk, so fewer files may exist.
        assert set(names) <= {f"{k:08d}.jpg" for k in range(599)}
    assert not (out / "label.txt").exists()
    for path in written:
        assert path.read_bytes() == records[int(path.stem)][2]


def test_pack_empty_label_file(tmp_path: Path) -> None:
    (tmp_path / "label.txt").write_text("\n\n")
    result = run_cli(
        "data", "pack", "--image-dir", tmp_path,
        "--label-file", tmp_path / "label.txt", "-o", tmp_path / "rec",
    )  # fmt: skip
    assert_one_line_error(result, "label.txt: no entries")
    assert not (tmp_path / "rec" / "train.rec").exists()


def test_pack_label_out_of_range(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(0))
    (tmp_path / "label.txt").write_text("a.jpg\t0\na.jpg\t-1\n")
    result = run_cli(
        "data", "pack", "--image-dir", tmp_path,
        "--label-file", tmp_path / "label.txt", "-o", tmp_path / "rec",
    )  # fmt: skip
    assert_one_line_error(result, "label.txt:2: label -1 is out of range")


def test_installed_console_script(friends: Path, tmp_path: Path) -> None:
    plsc = shutil.which("plsc", path=str(Path(sys.executable).parent))
    assert plsc is not None, "the plsc console script is not installed"
    out = tmp_path / "out"
    ok = subprocess.run(
        [plsc, "-q", "data", "extract", "--root-dir", friends, "-o", out, "--workers",
         "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    # --quiet prints only warnings and errors; the summary still reaches plsc.log.
    assert (ok.stdout, ok.stderr) == ("", "")
    log = (out / "plsc.log").read_text()
    assert "images: 245" in log
    assert "copied verification set small_lfw" in log
    assert f"DEBUG plsc_cli.cli.data: extracting {friends} to {out}" in log
    assert len(read_label_txt(out / "label.txt")) == 245
    _missing_idx(friends)
    failed = subprocess.run(
        [plsc, "data", "extract", "--root-dir", friends, "-o", tmp_path / "out2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        f"plsc: error: index file not found: {friends / 'train.idx'}; RecordIO needs "
        "both the .rec file and its .idx (key<TAB>byte offset per record), so copy "
        "the .idx from the same dataset download"
    ]


def test_extract_pack_write_plsc_log(friends: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("data", "extract", "--root-dir", friends, "-o", out)
    assert_ok(result)
    assert "  images: 245" in result.stderr
    log = (out / "plsc.log").read_text()
    for line in ("Extracted ", "  images: 245", "  classes: 6", "small_lfw"):
        assert line in log
    assert "DEBUG plsc_cli.cli.data: options: reencode=False workers=1" in log
    packed = tmp_path / "packed"
    result = run_cli(
        "data", "pack", "--image-dir", out, "--label-file", out / "label.txt",
        "-o", packed,
    )  # fmt: skip
    assert_ok(result)
    log = (packed / "plsc.log").read_text()
    assert "  images: 245" in log
    assert f"packing {out} to {packed}" in log


def test_convert_folder_writes_plsc_log(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.jpg").write_bytes(jpeg_bytes(i))
    bins = tmp_path / "bins"
    result = run_cli(
        "data", "convert", "--mode", "image2bin", "--image-path", images,
        "--bin-path", bins,
    )  # fmt: skip
    assert_ok(result)
    assert "Wrote 3 files to" in (bins / "plsc.log").read_text()


@pytest.mark.parametrize(
    "args",
    [
        ["data", "extract", "--root-dir", "{root}", "-o", "{file}"],
        ["data", "pack", "--image-dir", "{root}", "-o", "{file}"],
        ["data", "pack", "--image-dir", "{root}", "-o", "{file}/sub"],
        ["data", "convert", "--mode", "bin2image", "--bin-path", "{root}",
         "--image-path", "{file}"],
    ],
    ids=["extract", "pack", "pack-below-file", "convert"],
)  # fmt: skip
def test_output_dir_is_file(tmp_path: Path, args: list[str]) -> None:
    root = tmp_path / "in"
    root.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    argv = [a.format(root=root, file=afile) for a in args]
    option = "--image-path" if "convert" in args else "--output-dir"
    line = assert_one_line_error(run_cli(*argv), option, str(afile))
    assert "FileExistsError" not in line
    assert "NotADirectoryError" not in line
    assert afile.read_text() == "keep me\n"


def test_extract_mid_run_error_one_line(tmp_path: Path) -> None:
    # Fails after the progress bar started; stderr is a pipe, not a terminal.
    records = [(k, 0.0, jpeg_bytes(k, size=32)) for k in range(600)]
    root = write_im2rec(tmp_path / "rec", records)
    with RecordIOReader(root / "train.rec", root / "train.idx") as reader:
        cut = reader.offset(599) + 40
    os.truncate(root / "train.rec", cut)
    plsc = shutil.which("plsc", path=str(Path(sys.executable).parent))
    assert plsc is not None, "the plsc console script is not installed"
    failed = subprocess.run(
        [plsc, "data", "extract", "--root-dir", root, "-o", tmp_path / "out"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert len(lines) == 1, repr(failed.stderr)
    assert lines[0].startswith("plsc: error: ")
    assert "record 599" in lines[0]


def test_convert_file_below_file(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(0))
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    result = run_cli(
        "data", "convert", "--mode", "image2bin", "--image-path", tmp_path / "a.jpg",
        "--bin-path", afile / "a.bin",
    )  # fmt: skip
    assert_one_line_error(result, f"the output folder {afile} is a file")
    assert afile.read_text() == "keep me\n"


def test_pack_mixed_sizes_warns(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    (gallery / "a").mkdir(parents=True)
    (gallery / "b").mkdir()
    # The first image in packing order is the odd size out.
    (gallery / "a" / "0.png").write_bytes(png_bytes(0, size=48))
    (gallery / "a" / "1.jpg").write_bytes(jpeg_bytes(1, size=64))
    (gallery / "b" / "0.jpg").write_bytes(jpeg_bytes(2, size=64))
    (gallery / "b" / "1.png").write_bytes(png_bytes(3, size=80))
    (gallery / "b" / "2.jpg").write_bytes(jpeg_bytes(4, size=64))
    rec = tmp_path / "rec"
    result = run_cli("data", "pack", "--image-dir", gallery, "-o", rec)
    assert_ok(result)
    assert (rec / "property").read_text() == "2,64,64\n"
    warning = "2 of 5 images are not 64x64 (height x width)"
    assert f"warning: {warning}" in result.stderr
    assert warning in (rec / "plsc.log").read_text()


def test_pack_friends_gallery_property(tmp_path: Path) -> None:
    gallery = shared_path("data", "friends", "gallery")
    rec = tmp_path / "rec"
    result = run_cli("data", "pack", "--image-dir", gallery, "-o", rec)
    assert_ok(result)
    sizes: dict[tuple[int, int], int] = {}
    for path in gallery.glob("*/*"):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
            height, width = cv2.imread(str(path), cv2.IMREAD_COLOR).shape[:2]
            sizes[(height, width)] = sizes.get((height, width), 0) + 1
    total = sum(sizes.values())
    _, height, width = map(int, (rec / "property").read_text().split(","))
    # Several sizes may tie for the most common; any of them is correct.
    assert sizes[(height, width)] == max(sizes.values())
    others = total - sizes[(height, width)]
    assert f"warning: {others} of {total} images are not" in result.stderr


def test_pack_image_size_resizes(tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    (gallery / "a").mkdir(parents=True)
    (gallery / "a" / "0.png").write_bytes(png_bytes(0, size=48))
    (gallery / "a" / "1.jpg").write_bytes(jpeg_bytes(1, size=80))
    bgr = cv2.imdecode(np.frombuffer(jpeg_bytes(2, 64), np.uint8), cv2.IMREAD_COLOR)
    rgba = np.concatenate([bgr, np.full((64, 64, 1), 128, np.uint8)], axis=2)
    (gallery / "a" / "2.png").write_bytes(cv2.imencode(".png", rgba)[1].tobytes())
    rec = tmp_path / "rec"
    result = run_cli(
        "data", "pack", "--image-dir", gallery, "-o", rec, "--image-size", "32"
    )  # fmt: skip
    assert_ok(result)
    assert "warning" not in result.stderr
    assert (rec / "property").read_text() == "1,32,32\n"
    originals = [gallery / "a" / name for name in ("0.png", "1.jpg", "2.png")]
    images = record_images(rec)
    for key, path in enumerate(originals, 1):
        assert images[key][:2] == b"\xff\xd8", path
        stored = cv2.imdecode(np.frombuffer(images[key], np.uint8), cv2.IMREAD_COLOR)
        source = cv2.imread(str(path), cv2.IMREAD_COLOR)
        expected = cv2.resize(source, (32, 32), interpolation=cv2.INTER_LINEAR)
        params = [cv2.IMWRITE_JPEG_QUALITY, 100]
        reference = cv2.imdecode(cv2.imencode(".jpg", expected, params)[1], 1)
        np.testing.assert_array_equal(stored, reference, err_msg=str(path))
