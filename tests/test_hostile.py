"""Hostile inputs (issue: nothing written outside the named folder, every byte of metadata
checked, no traceback). Each test feeds one class of bad input to every command that reads
it and asserts the rules of tests/hostile.py; the counts are printed at the end (-s)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import fill
from hostile import Cases

from vidcache.features.untrusted import UniqueNames, csv_text, csv_untext, safe_relative

COUNTS: dict[str, dict[str, int]] = {}


@pytest.fixture
def cases(tmp_path, request):
    made = Cases(tmp_path)
    yield made
    COUNTS[request.node.name] = made.counts


def teardown_module():
    total = sum(sum(c.values()) for c in COUNTS.values())
    print(f"\nhostile cases: {total} commands in {len(COUNTS)} tests: {COUNTS}")


HOSTILE_IDS = [
    "../../../victim/keep.mp4",
    "/tmp/absolute/abs.mp4",
    "..\\..\\win\\back.mp4",
    "a/./b/../../c.mp4",
    ".hidden.mp4",
    "nul\x00byte.mp4",
    "new\nline.mp4",
    "=cmd|' /C calc'!A0.mp4",
    "Case.mp4",
    "case.mp4",
    "col:on.mp4",
    "col_on.mp4",
    "x" * 400 + ".mp4",
    "",
]


def test_names_from_ids_are_safe_and_unique():
    names = UniqueNames()
    made = [names.claim(safe_relative(i)) for i in HOSTILE_IDS]
    assert len({m.as_posix().casefold() for m in made}) == len(made)
    for m in made:
        assert not m.is_absolute() and ".." not in m.parts
        assert all(p and not p.startswith(".") and len(p) <= 124 for p in m.parts)
        assert all(ch.isprintable() and ch not in ':\\"' for ch in m.as_posix())
    assert made[0].as_posix() == "victim/keep.mp4"
    assert made[9].as_posix() == "case.mp4~2"


@pytest.mark.parametrize("text", ["=1+1", "+x", "-2", "@sum", "\tx", "'=x", "'", "plain", ""])
def test_csv_cells_are_never_formulas_and_read_back_exactly(text):
    cell = csv_text(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert csv_untext(cell) == text


def hostile_folder(root, ids, backbone="feat"):
    """A vidcache-export-like folder whose manifest carries ``ids``."""
    folder = root / "shared"
    folder.mkdir()
    rows = []
    for n, video_id in enumerate(ids):
        np.save(folder / f"v{n}_{backbone}.npy", np.full((3, 4), n, np.float32))
        rows.append([video_id, f"=label{n % 2}", f"v{n}_{backbone}.npy"])
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["video_id", "label", "file"])
        writer.writerows(rows)
    return folder


def test_export_writes_every_hostile_id_inside_its_folder(tmp_path, cases):
    ids = [i for i in HOSTILE_IDS if i]
    folder = hostile_folder(tmp_path, ids)
    cache = tmp_path / "c.h5"
    args = ["import", folder, "-o", cache, "--backbone-name", "x/../../../bb_escape", "--fps", "5"]
    cases.run(args, ["c.h5"], expect_ok=True)
    out = tmp_path / "exp"
    cases.run(["export", cache, out], ["exp"], expect_ok=True)
    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(csv_untext(r["video_id"]) for r in rows) == sorted(ids)
    files = {csv_untext(r["file"]) for r in rows}
    assert len(files) == len(ids)
    for row in rows:  # every file is where the manifest says, with its video's rows
        n = int(np.load(out / csv_untext(row["file"]))[0, 0])
        assert ids[n] == csv_untext(row["video_id"])
        assert not row["label"].startswith("=")
    # Exported back in: the same ids and labels, nothing written outside either.
    again = tmp_path / "again.h5"
    cases.run(["import", out, "-o", again, "--backbone-name", "x", "--fps", "5"], ["again.h5"])
    from vidcache.features.cache import CacheReader

    with CacheReader(again) as reader:
        assert sorted(reader.entries()) == sorted(ids)
        assert {e.label for e in reader.entries().values()} == {"=label0", "=label1"}


def test_export_refuses_a_link_planted_in_its_folder(tmp_path, cases):
    folder = hostile_folder(tmp_path, ["up/a.mp4", "b.mp4"])
    cache = tmp_path / "c.h5"
    cases.run(["import", folder, "-o", cache, "--backbone-name", "f", "--fps", "5"], ["c.h5"])
    out, victim = tmp_path / "exp", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    (out / "up").symlink_to(victim)
    result = cases.run(["export", cache, out], ["exp"], expect_ok=False)
    assert "outside" in result.output and not any(victim.iterdir())


def test_import_refuses_manifest_rows_outside_its_folder(tmp_path, cases):
    folder = hostile_folder(tmp_path, ["a.mp4", "b.mp4"])
    np.save(tmp_path / "secret_feat.npy", np.ones((2, 4), np.float32))
    with open(folder / "manifest.csv", "a", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([["c.mp4", "x", "../secret_feat.npy"],
                                   ["d.mp4", "x", str(tmp_path / "secret_feat.npy")]])  # fmt: skip
    cache = tmp_path / "c.h5"
    result = cases.run(
        ["import", folder, "-o", cache, "--backbone-name", "f", "--fps", "5"], ["c.h5"]
    )
    assert result.exit_code == 1 and result.output.count("outside") == 2
    from vidcache.features.cache import CacheReader

    with CacheReader(cache) as reader:
        assert sorted(reader.entries()) == ["a.mp4", "b.mp4"]


def npy_with_header(path, shape, dtype="<f4"):
    """A .npy whose header claims ``shape`` over 16 bytes of data."""
    import numpy.lib.format as fmt

    with open(path, "wb") as out:
        fmt.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
        out.write(b"\x00" * 16)


BAD_FILES = {
    "huge-header": lambda p: npy_with_header(p, (10**6, 10**6)),
    "pickled": lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "nan": lambda p: np.save(p, np.array([[np.nan, 1.0]], np.float32)),
    "inf": lambda p: np.save(p, np.array([[np.inf, 1.0]], np.float32)),
    "ints": lambda p: np.save(p, np.ones((2, 2), np.int64)),
    "one-d": lambda p: np.save(p, np.ones(4, np.float32)),
    "empty": lambda p: np.save(p, np.ones((0, 4), np.float32)),
    "truncated": lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"),
    "junk": lambda p: p.write_bytes(b"not numpy at all" * 10),
}

BAD_SIDES = {
    "fps-zero": ("_fps.npy", lambda p: np.save(p, np.float64(0))),
    "fps-negative": ("_fps.npy", lambda p: np.save(p, np.float64(-5))),
    "fps-nan": ("_fps.npy", lambda p: np.save(p, np.float64(np.nan))),
    "fps-inf": ("_fps.npy", lambda p: np.save(p, np.float64(np.inf))),
    "fps-array": ("_fps.npy", lambda p: np.save(p, np.ones(3))),
    "fps-pickled": ("_fps.npy", lambda p: np.save(p, np.array(["x"], object), allow_pickle=True)),
    "stamps-nan": ("_timestamps_ms.npy", lambda p: np.save(p, np.array([0.0, np.nan]))),
    "stamps-short": ("_timestamps_ms.npy", lambda p: np.save(p, np.array([0.0]))),
}


def test_import_checks_every_file_and_imports_the_rest(tmp_path, cases):
    folder = tmp_path / "vf"
    folder.mkdir()
    for name, make in BAD_FILES.items():
        make(folder / f"{name}_feat.npy")
    for name, (side, make) in BAD_SIDES.items():
        np.save(folder / f"{name}_feat.npy", np.ones((2, 4), np.float32))
        make(folder / f"{name}{side}")
    np.save(folder / "good_feat.npy", np.ones((2, 4), np.float32))
    cache = tmp_path / "c.h5"
    result = cases.run(["import", folder, "-o", cache, "--backbone-name", "feat", "--fps", "5"],
                       ["c.h5"], expect_ok=False)  # fmt: skip
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped")]
    assert len(skipped) == len(BAD_FILES) + len(BAD_SIDES), result.output
    for name in list(BAD_FILES) + list(BAD_SIDES):
        assert sum(f"/{name}_" in line for line in skipped) == 1, (name, result.output)
    from vidcache.features.cache import CacheReader

    with CacheReader(cache) as reader:
        assert list(reader.entries()) == ["good"]
    # Nothing good at all: one line, and no cache is made.
    (folder / "good_feat.npy").unlink()
    cases.run(["import", folder, "-o", tmp_path / "none.h5", "--backbone-name", "feat",
               "--fps", "5"], [], expect_ok=False)  # fmt: skip
    assert not (tmp_path / "none.h5").exists()


@pytest.mark.parametrize("fps", ["0", "-1", "nan", "inf", "1e30"])
def test_import_refuses_an_absurd_frame_rate(tmp_path, cases, fps):
    folder = tmp_path / "vf"
    folder.mkdir()
    np.save(folder / "a_feat.npy", np.ones((2, 4), np.float32))
    args = ["import", folder, "-o", tmp_path / "c.h5", "--backbone-name", "feat", "--fps", fps]
    cases.run(args, [], expect_ok=False)
    assert not (tmp_path / "c.h5").exists()


def test_an_id_or_label_with_a_nul_character_is_one_line(tmp_path, cases):
    folder = hostile_folder(tmp_path, ["nul\x00byte.mp4", "fine.mp4"])
    with open(folder / "manifest.csv", "a", newline="", encoding="utf-8") as out:
        np.save(folder / "v9_feat.npy", np.ones((2, 4), np.float32))
        csv.writer(out).writerow(["label.mp4", "bad\x00label", "v9_feat.npy"])
    cache = tmp_path / "c.h5"
    args = ["import", folder, "-o", cache, "--backbone-name", "feat", "--fps", "5"]
    cases.run(args, ["c.h5"], expect_ok=True)
    from vidcache.features.cache import CacheReader

    with CacheReader(cache) as reader:  # kept as they are: data, not names
        assert reader.entries()["nul\x00byte.mp4"].label == "=label0"
        assert reader.entries()["label.mp4"].label == "bad\x00label"
    cases.run(["export", cache, tmp_path / "exp"], ["exp"], expect_ok=True)
    assert (tmp_path / "exp" / "nul_byte_feat.npy").is_file()


def test_hostile_text_trains_and_is_written_as_text(tmp_path, cases):
    """Captions with NUL and escape characters, labels and captions that a spreadsheet
    would run, labels with matplotlib's math markers: training works, every CSV cell
    vidcache writes stays text."""
    from test_train import ordered_videos, write_cache

    names = {"up": '=HYPERLINK("x")', "down": "$\\alpha$ {down", "peak": "@peak\x1b[31m"}
    videos = {k.replace(k.split("/")[0], names[k.split("/")[0]], 1): (names[v[0]], v[1])
              for k, v in ordered_videos(per_class=4).items()}  # fmt: skip
    cache = write_cache(tmp_path / "f.h5", videos)
    captions = tmp_path / "captions.csv"
    with open(captions, "w", newline="", encoding="utf-8") as out:
        rows = [[v, f"-a square\x00that {'grows' if 'HYPER' in v else 'moves'}"] for v in videos]
        csv.writer(out).writerows(rows)
    run = tmp_path / "cap"
    args = ["train-rnn", cache, "-o", run, "--task", "caption", "--captions", captions,
            "--units", "4", "--embedding-dim", "4", "--epochs", "1", "-q"]  # fmt: skip
    cases.run(args, ["cap"], expect_ok=True)
    with open(run / "val_captions.csv", newline="", encoding="utf-8") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert cells and not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    labels = tmp_path / "cls"
    cases.run(["train-rnn", cache, "-o", labels, "--units", "4", "--epochs", "1", "-q"],
              ["cls"], expect_ok=True)  # fmt: skip
    assert (labels / "confusion_matrix.png").is_file()
    result = cases.run(["evaluate", labels, cache], ["cls"], expect_ok=True)
    assert "Traceback" not in result.output


def read_only(tmp_path):
    """A folder bind-mounted read-only (unmounted by the caller), or skip."""
    import subprocess

    source, mount = tmp_path / "ro-source", tmp_path / "ro"
    source.mkdir()
    mount.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(mount)]).returncode:
        pytest.skip("cannot bind-mount read-only here")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=False)
    return mount


def test_writing_results_to_a_full_read_only_or_forbidden_place_is_one_line(
    tmp_path, cases, small_disk
):
    import subprocess

    from test_train import ordered_videos, write_cache

    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=3))
    run = tmp_path / "run"
    cases.run(["train-rnn", cache, "-o", run, "--units", "4", "--epochs", "1", "-q"], ["run"])
    folder = hostile_folder(tmp_path, ["a.mp4", "b.mp4"])
    fill(small_disk)
    mount = read_only(tmp_path)
    forbidden = tmp_path / "forbidden"
    forbidden.mkdir(mode=0o500)  # root ignores modes: a file where a folder must go
    blocked = tmp_path / "blocked"
    blocked.write_text("a file")
    try:
        for place, why in ((small_disk, "No space left"), (mount, "Read-only"),
                           (blocked / "x", "Not a directory")):  # fmt: skip
            for args in (
                ["export", cache, place / "npy"],
                ["import", folder, "-o", place / "c.h5", "--backbone-name", "f", "--fps", "5"],
                ["train-rnn", cache, "-o", place / "r", "--units", "4", "--epochs", "1", "-q"],
                ["evaluate", run, cache, "-o", place / "e"],
            ):
                named = args[-1] if args[0] == "export" else args[args.index("-o") + 1]
                result = cases.run(args, [named.relative_to(tmp_path).as_posix()], False)
                errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
                assert len(errors) == 1, (args, result.output)
                assert str(place) in errors[0] or place.name in errors[0], (args, errors)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    # What an export finished stays, whole; nothing else was left on the full disk.
    assert sorted(p.name for p in small_disk.iterdir()) in (["filler"], ["filler", "npy"])
    for file in (small_disk / "npy").rglob("*"):
        assert file.is_dir() or np.load(file) is not None


def test_a_damaged_settings_record_is_one_line_in_every_command(tmp_path, cases):
    """One flipped bit in the settings (a shared cache, a copy gone bad): every command
    that reads the cache refuses it in one line and writes nothing."""
    from test_train import ordered_videos, write_cache

    good = write_cache(tmp_path / "good.h5", ordered_videos(per_class=3))
    run = tmp_path / "run"
    cases.run(["train-rnn", good, "-o", run, "--units", "4", "--epochs", "1", "-q"], ["run"])
    bad = tmp_path / "bad.h5"
    data = bytearray(good.read_bytes())
    data[data.find(b'"image_size":') + 14] ^= 1  # 75 -> 65: still valid JSON
    bad.write_bytes(data)
    videos = tmp_path / "videos"
    videos.mkdir()
    for args in (
        ["inspect", bad],
        ["verify", bad],
        ["verify", "--repair", bad],
        ["compact", bad],
        ["migrate", bad, "-o", tmp_path / "m.h5"],
        ["merge", bad, good, "-o", tmp_path / "merged.h5"],
        ["export", bad, tmp_path / "npy"],
        ["train-rnn", bad, "-o", tmp_path / "r2", "--epochs", "1"],
        ["evaluate", run, bad],
        ["extract", videos, "-o", tmp_path / "x.h5", "--like", bad],
    ):
        result = cases.run(args, [], expect_ok=False)
        assert "settings record fails its check" in result.output, (args, result.output)
    assert bad.read_bytes() == bytes(data)


@pytest.mark.slow
def test_hostile_videos_through_extract_predict_and_stream(tmp_path, cases):
    """Lying timestamps, AVIs with packed B-frames, empty, junk and cut files beside good
    ones: extraction (bounded in time) keeps the good ones and names each bad one; predict
    and predict --stream agree on the AVIs whose plan used to keep other frames."""
    import json
    import shutil

    from conftest import lossless, random_frames
    from quirks import QUIRK_FILES
    from test_quirks import bounded

    videos = tmp_path / "videos"
    (videos / "odd").mkdir(parents=True)
    for name, make in QUIRK_FILES.items():
        make(videos / "odd" / name)
    lossless(videos / "good" / "a.mkv", random_frames(8, seed=1))
    lossless(videos / "good" / "b.mkv", random_frames(8, seed=2))
    (videos / "good" / "empty.mp4").write_bytes(b"")
    (videos / "good" / "junk.mp4").write_bytes(b"\x00\x01junk" * 50)
    cut = (videos / "odd" / "offset-ntsc.mp4").read_bytes()
    (videos / "good" / "cut.mp4").write_bytes(cut[: len(cut) // 3])
    cache = tmp_path / "f.h5"
    extract = ["extract", videos, "-o", cache, "--weights", "random", "--image-size", "75",
               "--fps", "5", "-q"]  # fmt: skip
    with bounded(120):  # fails, rather than hangs, past 120 s
        result = cases.run(extract, ["f.h5"], expect_ok=False)
    skipped = sorted(
        line.split(":")[0] for line in result.output.splitlines() if line.startswith("skipped")
    )
    assert len(skipped) == 3 and all(n in " ".join(skipped) for n in ("empty", "junk", "cut"))
    from vidcache.features.cache import CacheReader

    with CacheReader(cache) as reader:
        kept = reader.entries()
    assert len(kept) == len(QUIRK_FILES) + 2
    run = tmp_path / "run"
    cases.run(["train-rnn", cache, "-o", run, "--units", "4", "--epochs", "1", "-q",
               "--val-split", "0.5"], ["run"], expect_ok=True)  # fmt: skip
    shutil.rmtree(videos / "good")
    result = cases.run(["predict", run, videos / "odd", "--json"], [], expect_ok=True)
    offline = {Path(p["path"]).name: p for p in json.loads(result.output)}
    for name in ("packed-bframes.avi", "h264-bframes.avi"):
        streamed = cases.run(["predict", run, videos / "odd" / name, "--stream", "--csv"], [],
                             expect_ok=True)  # fmt: skip
        final = streamed.stdout.strip().splitlines()[-1].split(",")
        top = offline[name]["top"][0]
        assert final[2] == top["label"], (name, streamed.output)
        assert abs(float(final[3]) - top["probability"]) < 2e-6, (name, final, top)


def test_youtube8m_records_are_data_never_paths(tmp_path, cases):
    """Hostile ids, absurd label indices and broken records in YouTube-8M TFRecords: each
    bad record one line, ids stored as data (an export writes them inside its folder)."""
    from vidcache.features.yt8m import write_records

    rng = np.random.default_rng(0)

    def rows(t, width):
        return rng.integers(0, 256, size=(t, width), dtype=np.uint8)

    ids = [i for i in HOSTILE_IDS if i and "\x00" not in i]
    videos = [(v, [2**62, -5, 3], rows(2, 1024), rows(2, 128)) for v in ids]
    videos += [
        ("nul\x00id", [1], rows(2, 1024), rows(2, 128)),  # kept as data, as npy import does
        ("no-frames", [1], rows(0, 1024), rows(0, 128)),
        ("lengths", [1], rows(3, 1024), rows(2, 128)),
    ]
    write_records(tmp_path / "a.tfrecord", videos)
    out = tmp_path / "yt"
    result = cases.run(["import", "--format", "yt8m", tmp_path / "a.tfrecord", "-o", out], ["yt"])
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    assert any("no 'rgb' frames" in s for s in skipped), result.output
    assert any("3 rgb frames but 2 audio frames" in s for s in skipped), result.output
    from vidcache.features.cache import CacheReader

    with CacheReader(out / "rgb.h5") as reader:
        stored = reader.entries()
    assert set(stored) == {*ids, "nul\x00id"}
    assert stored[ids[0]].label == f"{2**62};-5;3"
    cases.run(["export", out / "rgb.h5", tmp_path / "exp"], ["exp"], expect_ok=True)


def test_segment_annotations_are_data_never_paths(tmp_path, cases):
    """Segments naming videos that climb out of folders, absurd and non-finite times,
    formula labels; frame label folders with a planted link or an oversized file."""
    from test_segment import phased_videos, write_segments
    from test_train import write_cache

    videos, rows = phased_videos(6, seed=1)
    cache = write_cache(tmp_path / "f.h5", videos)
    rows += [("../../../victim/keep.mp4", 0, 1, "x"), ("/etc/passwd", 0, 1, "y")]
    rows += [(next(iter(videos)), 1e300, 1e301, "=cmd|' /C calc'!A0")]  # past the end
    good = write_segments(tmp_path / "s.csv", rows)
    train = ["train-rnn", cache, "--task", "segment", "--head", "mean", "--units", "4",
             "--epochs", "1", "-q"]  # fmt: skip
    result = cases.run([*train, "-o", tmp_path / "run", "--segments", good], ["run"], True)
    assert "name no cached video" in result.output
    labels = (tmp_path / "run" / "labels.json").read_text()
    assert "=cmd" not in labels  # no frame lies at 1e300 s: the label labels nothing
    for name, bad in {"inf": [("a", "inf", 1, "x")], "nan": [("a", 0, "nan", "x")]}.items():
        path = write_segments(tmp_path / f"{name}.csv", bad)
        cases.run([*train, "-o", tmp_path / name, "--segments", path], [], expect_ok=False)
    folder = tmp_path / "gt"
    folder.mkdir()
    (folder / "clip1_00.txt").symlink_to(good)  # a link out of the folder
    cases.run([*train, "-o", tmp_path / "r1", "--segments", folder], [], expect_ok=False)
    (folder / "clip1_00.txt").unlink()
    with open(folder / "clip1_00.txt", "wb") as handle:
        handle.truncate(65 << 20)  # claims 65 MiB (sparse): refused by its size
    cases.run([*train, "-o", tmp_path / "r2", "--segments", folder], [], expect_ok=False)


def test_hostile_sound_files_are_one_line_each_and_write_nothing_outside(tmp_path, cases):
    """The audio input path: a WAV whose header claims an absurd rate and size, an empty
    .mp3, a .wav of random bytes, an .m4a that is really text, a sound stamped 10^6 s after
    its pictures, a sound-only file named like a climb out of the folder, absurd
    --audio-span values; each is one line or a correct cache, and nothing is written
    outside the cache (and its lock)."""
    import struct

    from vidcache.features.audio.synthetic import tone_sequence, write_av

    root = tmp_path / "v"
    good = write_av(root / "good.wav", None, 10, tone_sequence([440], 1.0, 16000), 16000, "pcm")
    lying = bytearray(good.read_bytes())
    lying[24:28] = struct.pack("<I", 0xFFFFFFFF)  # sample rate
    lying[40:44] = struct.pack("<I", 0xFFFFFFF0)  # data size
    (root / "lying.wav").write_bytes(bytes(lying))
    (root / "empty.mp3").write_bytes(b"")
    (root / "noise.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "text.m4a").write_text("not a sound at all\n" * 50)
    write_av(root / "late.mkv", [np.zeros((16, 16, 3), np.uint8)] * 10, 10,
             tone_sequence([440], 1.0, 48000), 48000, "opus", audio_start=1e6)  # fmt: skip
    write_av(root / "..." / "..-up.wav", None, 10, tone_sequence([440], 1.0, 16000), 16000, "pcm")
    cache = tmp_path / "a.h5"
    result = cases.run(["extract", root, "-o", cache, "--backbone", "logmel", "--fps", "5"],
                       ["a.h5"])  # fmt: skip
    for name in ("empty.mp3", "noise.wav", "text.m4a"):
        assert sum(name in line for line in result.output.splitlines()) == 1, result.output
    from vidcache.features.cache import CacheReader

    with CacheReader(cache) as reader:
        assert "good.wav" in reader and ".../..-up.wav" in reader and "late.mkv" in reader
        for video_id in reader.entries():
            assert np.isfinite(reader.features(video_id)).all()
    for span in ("nan", "inf", "-1", "0", "1e9"):
        cases.run(["extract", root, "-o", tmp_path / "x.h5", "--backbone", "logmel",
                   "--audio-span", span], [], expect_ok=False)  # fmt: skip
    for option, value in (("--fps", "nan"), ("--fps", "inf"), ("--folder-fps", "nan")):
        refused = cases.run(["extract", root, "-o", tmp_path / "x.h5", option, value], [],
                            expect_ok=False)  # fmt: skip
        assert refused.exit_code == 2 and "not a finite number" in refused.output
    cases.run(["export", cache, tmp_path / "exp"], ["exp"], expect_ok=True)


def test_hostile_urls_are_one_line_each_and_write_nothing(tmp_path, cases, monkeypatch):
    """URL inputs that name nothing, climb, carry credentials in the URL or lead to a store
    that refuses the connection (on 127.0.0.1 only: no request leaves this machine): one
    line each, no cache, no credential shown."""
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHOSTILE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hostile-secret")
    from vidcache.features.remote import urls

    monkeypatch.setattr(urls, "_FILE_SYSTEMS", {})
    out = tmp_path / "f.h5"
    for url in ("s3://", "s3:///../../etc/", "s3://bucket/../../x.mp4",
                "http://user:s3cret@127.0.0.1:1/v.mp4?X-Amz-Signature=abcdef",
                "https://127.0.0.1:1/list.csv"):  # fmt: skip
        result = cases.run(["extract", url, "-o", out], [], expect_ok=False)
        assert result.exit_code == 1 and not out.exists(), result.output
        assert "s3cret" not in result.output and "abcdef" not in result.output
        assert "hostile-secret" not in result.output
    for args in (["inspect", "s3://bucket/../f.h5"], ["train-rnn", "s3://bucket/", "-o",
                 tmp_path / "run"], ["extract", tmp_path, "-o", "s3://bucket/out/"]):  # fmt: skip
        result = cases.run(args, [], expect_ok=False)
        assert "hostile-secret" not in result.output
