"""Caption vocabularies, captions and targets files, matching rows to cached videos."""

import numpy as np
import pytest

from vidcache.models.annotations import (
    AnnotationError,
    VideoMatcher,
    align_targets,
    match_rows,
    read_captions,
    read_targets,
)
from vidcache.models.text import END, PAD, START, UNK, CaptionVocabulary, VocabularyError

CAPTIONS = ["A red square grows.", "The red square, it shrinks!", "a blue square grows"]


def test_tokenisation_round_trip_with_reserved_tokens(tmp_path):
    vocab = CaptionVocabulary.build(CAPTIONS)
    assert vocab.words[:4] == ["", "[UNK]", "<start>", "<end>"]
    assert (PAD, UNK, START, END) == (0, 1, 2, 3)
    ids = vocab.words_of("A RED square grows!!")
    assert vocab.decode(ids) == "a red square grows"
    # Text can never produce the reserved tokens: "<start>" standardises to "start".
    assert vocab.words_of("<start> <end>") == [UNK, UNK]
    assert vocab.decode([START, *ids, END, *ids]) == "a red square grows"
    inputs, targets = vocab.encode(["a red square grows", "red"], max_words=20)
    assert inputs.shape == targets.shape == (2, 5)
    assert inputs[0].tolist() == [START, *ids]
    assert targets[0].tolist() == [*ids, END]
    assert inputs[1].tolist()[:2] == [START, vocab.words.index("red")]
    assert targets[1].tolist() == [vocab.words.index("red"), END, 0, 0, 0]
    cut_in, cut_out = vocab.encode(["a red square grows"], max_words=2)
    assert cut_in.tolist() == [[START, *ids[:2]]] and cut_out.tolist() == [[*ids[:2], END]]
    vocab.save(tmp_path)
    loaded = CaptionVocabulary.load(tmp_path)
    assert loaded.words == vocab.words
    assert loaded.words_of("the blue square shrinks") == vocab.words_of("the blue square shrinks")


def test_vocabulary_size_limits_words_to_the_most_frequent():
    vocab = CaptionVocabulary.build(["square square square red red blue"], max_tokens=6)
    assert vocab.size == 6 and vocab.words[4:] == ["square", "red"]
    assert vocab.words_of("blue") == [UNK]
    with pytest.raises(VocabularyError, match="at least 5"):
        CaptionVocabulary.build(CAPTIONS, max_tokens=4)
    with pytest.raises(VocabularyError, match="no words"):
        CaptionVocabulary.build(["!!!"])
    with pytest.raises(VocabularyError, match="without vectorizer.keras"):
        CaptionVocabulary.load(".")


def test_read_captions_many_per_video_optional_header_and_unquoted_commas(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text(
        'path,caption\na.mp4,a man runs\na.mp4,"someone runs, fast"\nb.mp4,a dog, barking\n'
        "# comment\n\n",
        encoding="utf-8",
    )
    assert read_captions(path) == {
        "a.mp4": ["a man runs", "someone runs, fast"],
        "b.mp4": ["a dog, barking"],
    }
    path.write_text("a.mp4,\n", encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"captions.csv:1: each row needs 'path,caption'"):
        read_captions(path)


def test_read_targets_per_video_and_per_frame(tmp_path):
    per_video = tmp_path / "video.csv"
    per_video.write_text("a.mp4,1.5,2\nb.mp4,-1,0\n", encoding="utf-8")
    table = read_targets(per_video)
    assert not table.per_frame and table.names == ["value_1", "value_2"]
    np.testing.assert_array_equal(table.values["a.mp4"], [1.5, 2.0])
    per_video.write_text("path,speed\na.mp4,3\n", encoding="utf-8")
    assert read_targets(per_video).names == ["speed"]

    per_frame = tmp_path / "frames.csv"
    per_frame.write_text("path,time,steer\na.mp4,0.4,3\na.mp4,0,1\na.mp4,0.2,2\n", encoding="utf-8")
    table = read_targets(per_frame)
    assert table.per_frame and table.names == ["steer"]
    times, values = table.values["a.mp4"]
    np.testing.assert_array_equal(times, [0.0, 0.2, 0.4])  # sorted by time
    np.testing.assert_array_equal(values[:, 0], [1, 2, 3])


@pytest.mark.parametrize(
    "text, message",
    [
        ("a.mp4,1\na.mp4,2\n", r":2: 'a.mp4' has two rows; per-frame targets need a header"),
        ("path,v\na.mp4,x\n", r":2: 'x' is not a number"),
        ("a.mp4,1,2\nb.mp4,1\n", r":2: 2 columns, expected 3"),
        ("a.mp4,nan\n", "not a finite number"),
        ("path,time\na.mp4,1\n", "no value columns"),
        ("", "no targets"),
    ],
)
def test_bad_targets_files_name_the_line(tmp_path, text, message):
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AnnotationError, match=message):
        read_targets(path)


def test_rows_match_videos_by_id_path_name_or_stem(tmp_path):
    matcher = VideoMatcher(
        {
            "grow/c1.mp4": str(tmp_path / "videos/grow/c1.mp4"),
            "shrink/c1.mp4": str(tmp_path / "videos/shrink/c1.mp4"),
            "video7.mp4": "/data/msrvtt/video7.mp4",
        }
    )
    assert matcher.match("grow/c1.mp4", tmp_path) == "grow/c1.mp4"
    assert matcher.match("videos/shrink/c1.mp4", tmp_path) == "shrink/c1.mp4"  # relative path
    assert matcher.match("video7", tmp_path) == "video7.mp4"  # MSR-VTT style id
    assert matcher.match("other/video7.mp4", tmp_path) == "video7.mp4"
    assert matcher.match("c1.mp4", tmp_path) is None  # two videos have that name
    matched, unmatched = match_rows(
        {"grow/c1.mp4": ["x"], "videos/grow/c1.mp4": ["y"], "nope.mp4": ["z"]},
        matcher,
        tmp_path / "captions.csv",
    )
    assert matched == {"grow/c1.mp4": ["x", "y"]} and unmatched == ["nope.mp4"]
    with pytest.raises(AnnotationError, match="two rows name the video"):
        match_rows({"video7": np.ones(1), "video7.mp4": np.ones(1)}, matcher, "t.csv")


def test_per_frame_targets_align_to_the_nearest_row_within_tolerance():
    times = np.array([0.0, 0.2, 0.4, 1.0])
    values = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    stamps = np.array([0.01, 0.19, 0.31, 0.7, 0.98])
    targets, weights = align_targets(stamps, times, values, tolerance=0.05)
    np.testing.assert_array_equal(weights, [1, 1, 0, 0, 1])
    np.testing.assert_array_equal(targets[:, 0], [1, 2, 0, 0, 4])
