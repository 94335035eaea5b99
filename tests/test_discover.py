from pathlib import Path

import pytest
from conftest import lossless, random_frames

from vidcache.features.errors import DiscoveryError
from vidcache.features.synthetic import write_frame_folder
from vidcache.features.video.discover import apply_labels, discover, frame_files


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_ucf101_layout_gives_labels_from_folder_names(tmp_path):
    touch(tmp_path / "v" / "Archery" / "v_Archery_g01_c01.avi")
    touch(tmp_path / "v" / "Archery" / "v_Archery_g01_c02.AVI")
    touch(tmp_path / "v" / "Bowling" / "v_Bowling_g02_c01.mp4")
    touch(tmp_path / "v" / "Bowling" / "notes.txt")
    touch(tmp_path / "v" / "loose.mkv")
    sources = discover([tmp_path / "v"])
    assert [(s.video_id, s.label, s.kind) for s in sources] == [
        ("loose.mkv", None, "file"),
        ("Archery/v_Archery_g01_c01.avi", "Archery", "file"),
        ("Archery/v_Archery_g01_c02.AVI", "Archery", "file"),
        ("Bowling/v_Bowling_g02_c01.mp4", "Bowling", "file"),
    ]
    assert all(s.path.is_absolute() for s in sources)


def test_file_argument_is_one_unlabelled_video_and_glob_replaces_extensions(tmp_path):
    clip = touch(tmp_path / "a" / "clip.webm")
    touch(tmp_path / "b" / "x" / "one.dat")
    touch(tmp_path / "b" / "x" / "two.mp4")
    assert [(s.video_id, s.label) for s in discover([clip])] == [("clip.webm", None)]
    assert [s.video_id for s in discover([tmp_path / "b"], glob="*.dat")] == ["x/one.dat"]


def test_folder_of_numbered_frames_is_one_video_in_numeric_order(tmp_path):
    folder = tmp_path / "v" / "Jump" / "clip1"
    for n in (10, 9, 1, 2):
        touch(folder / f"img_{n}.jpg")
    sources = discover([tmp_path / "v"])
    assert [(s.video_id, s.label, s.kind) for s in sources] == [("Jump/clip1", "Jump", "frames")]
    assert [p.name for p in frame_files(folder)] == [
        "img_1.jpg",
        "img_2.jpg",
        "img_9.jpg",
        "img_10.jpg",
    ]
    # The folder itself passed as an argument is one video too.
    assert [s.kind for s in discover([folder])] == ["frames"]


def test_unicode_and_spaces_in_names(tmp_path):
    touch(tmp_path / "v" / "Café au lait" / "tasse n°1 — été.mp4")
    (source,) = discover([tmp_path / "v"])
    assert source.label == "Café au lait"
    assert source.video_id == "Café au lait/tasse n°1 — été.mp4"


def test_duplicate_ids_across_inputs_are_rejected_up_front(tmp_path):
    touch(tmp_path / "train" / "A" / "c.mp4")
    touch(tmp_path / "test" / "A" / "c.mp4")
    with pytest.raises(DiscoveryError, match=r"1 video id\(s\) occur more than once.*A/c.mp4"):
        discover([tmp_path / "train", tmp_path / "test"])


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(DiscoveryError, match="no such file or folder"):
        discover([tmp_path / "nope"])


def test_labels_csv_overrides_labels_and_keeps_extra_columns(tmp_path):
    touch(tmp_path / "v" / "A" / "one.mp4")
    touch(tmp_path / "v" / "A" / "two.mp4")
    csv = tmp_path / "labels.csv"
    csv.write_text(
        "path,label,split,annotator\nA/one.mp4,jumping,train,ann\n"
        "v/A/two.mp4,running,val,bob\nA/ghost.mp4,x,train,ann\n",
        encoding="utf-8",
    )
    sources, unmatched = apply_labels(discover([tmp_path / "v"]), csv)
    assert [(s.label, dict(s.meta)) for s in sources] == [
        ("jumping", {"split": "train", "annotator": "ann"}),  # matched by video id
        ("running", {"split": "val", "annotator": "bob"}),  # matched as a path next to the CSV
    ]
    assert unmatched == ["A/ghost.mp4"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("file,class\na,b\n", "needs the columns 'path' and 'label'"),
        ("path,label\na,b\na,c\n", "labels.csv:3: path 'a' is listed twice"),
        ("path,label\n,b\n", "labels.csv:2: empty path"),
    ],
)
def test_bad_labels_files_name_the_problem(tmp_path, text, message):
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with pytest.raises(DiscoveryError, match=message):
        apply_labels([], csv)


def test_real_videos_and_frame_folders_are_found_together(tmp_path):
    lossless(tmp_path / "v" / "A" / "a.mkv", random_frames(2))
    write_frame_folder(tmp_path / "v" / "A" / "b", random_frames(2))
    assert [(s.video_id, s.kind) for s in discover([tmp_path / "v"])] == [
        ("A/a.mkv", "file"),
        ("A/b", "frames"),
    ]
