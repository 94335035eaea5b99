"""The settings record and the root attributes are checked like the index: every flipped
bit in them is damage in one line, never other settings read back silently; settings that
parse but make no sense are refused field by field."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from test_integrity import SETTINGS8, small_cache

from vidcache.features.cache import CacheReader
from vidcache.features.errors import CacheFormatError
from vidcache.features.settings import FeatureSettings
from vidcache.pipeline.cli import cli


def flip_positions(data: bytes, needle: bytes) -> range:
    """Where ``needle`` first stands (the root attributes' heap comes before the index)."""
    at = data.find(needle)
    assert 0 <= at < 8192, needle
    return range(at, at + len(needle))


def reads_as(path):
    """What a reader makes of the file: its settings, or the error's text."""
    try:
        with CacheReader(path) as reader:
            return reader.settings
    except CacheFormatError as exc:
        return str(exc)


def test_every_bit_flip_in_the_root_attributes_is_damage(tmp_path):
    """Each byte of the settings text, its hash, the versions and the creation time has
    one bit flipped in turn: every flip is reported as damage (one line) or the file is
    not HDF5 any more; none reads back as other settings."""
    path = small_cache(tmp_path / "c.h5")
    data = path.read_bytes()
    with h5py.File(path) as f:
        attrs = {k: f.attrs[k] for k in ("settings", "settings_sha256", "versions", "created")}
    targets = [flip_positions(data, str(v).encode()) for v in attrs.values()]
    caught, flips = 0, 0
    damaged = tmp_path / "d.h5"
    for positions in targets:
        for position in positions:
            for bit in (0, 6):
                flipped = bytearray(data)
                flipped[position] ^= 1 << bit
                damaged.write_bytes(flipped)
                flips += 1
                outcome = reads_as(damaged)
                assert isinstance(outcome, str), (position, bit, outcome)
                assert "\n" not in outcome
                caught += "damaged" in outcome
    print(f"\nroot attribute flips: {flips}, all refused ({caught} named as damage)")
    assert caught == flips


def test_a_flip_of_num_frames_is_caught_by_verify_and_train_rnn(tmp_path):
    """The issue's case: "num_frames":4 read back as 5."""
    settings = FeatureSettings.for_backbone(
        "InceptionV3", weights="random:seed=0", weights_sha256="x", image_size=75,
        sampling=__import__("vidcache.features.settings", fromlist=["SamplingSpec"]).SamplingSpec(
            fps=None, num_frames=4
        ),
    )  # fmt: skip
    from vidcache.features.cache import CacheEntry, FeatureCache

    path = tmp_path / "c.h5"
    with FeatureCache.open(path, settings, {}) as cache:
        entry = CacheEntry("v", "/v", "a", "file", 1, 0.0, "sha256:v", 4, 5.0)
        cache.write_rows(entry, np.ones((4, 2048), np.float32), np.arange(4) / 5, np.arange(4))
    data = path.read_bytes()
    at = data.find(b'"num_frames":4')
    path.write_bytes(data[: at + 13] + b"5" + data[at + 14 :])
    for command in (["verify", path], ["inspect", path], ["train-rnn", path, "-o", tmp_path / "r"]):
        result = CliRunner().invoke(cli, [str(a) for a in command])
        assert result.exit_code == 1, (command, result.output)
        assert "settings record fails its check" in result.output
    assert not (tmp_path / "r").exists()


BAD_SETTINGS = {
    "weights-number": ({"weights": 123}, "weights is 123, not text"),
    "negative-dim": ({"feature_dim": -5}, "feature_dim is -5"),
    "huge-dim": ({"feature_dim": 10**18}, "feature_dim is 1000000000000000000"),
    "bool-size": ({"image_size": True}, "image_size is True"),
    "nan-fps": ({"sampling": {"fps": float("nan")}}, "sampling.fps is nan"),
    "zero-fps": ({"sampling": {"fps": 0}}, "sampling.fps is 0"),
    "text-frames": ({"sampling": {"fps": None, "num_frames": "4"}}, "sampling.num_frames"),
    "unknown": ({"colour": "x"}, "unknown field 'colour'"),
    "list": (["not", "an", "object"], "a JSON list"),
}


def write_settings(path, text: str) -> None:
    """Replace the settings text and restamp every check, as a careful forger would:
    what is left to catch it is the check of the settings' types and ranges."""
    import hashlib

    from vidcache.features.cache import rootattrs

    with h5py.File(path, "r+") as f:
        f.attrs["settings"] = text
        f.attrs["settings_sha256"] = hashlib.sha256(text.encode()).hexdigest()
        rootattrs.stamp(f)


@pytest.mark.parametrize("name", sorted(BAD_SETTINGS))
def test_settings_that_make_no_sense_are_refused_field_by_field(tmp_path, name):
    path = small_cache(tmp_path / "c.h5")
    change, expected = BAD_SETTINGS[name]
    if isinstance(change, dict):
        data = SETTINGS8.to_dict()
        for key, value in change.items():
            data[key] = {**data[key], **value} if key == "sampling" else value
    else:
        data = change
    write_settings(path, json.dumps(data))
    outcome = reads_as(path)
    assert isinstance(outcome, str) and expected in outcome and "damaged cache" in outcome


def test_deeply_nested_settings_are_one_line(tmp_path):
    path = small_cache(tmp_path / "c.h5")
    write_settings(path, "[" * 100_000 + "]" * 100_000)
    outcome = reads_as(path)
    assert isinstance(outcome, str) and "nested too deeply" in outcome


def test_settings_that_disagree_with_the_rows_are_damage(tmp_path):
    path = small_cache(tmp_path / "c.h5")
    data = SETTINGS8.to_dict()
    data["feature_dim"] = 16
    write_settings(path, json.dumps(data, sort_keys=True, separators=(",", ":")))
    outcome = reads_as(path)
    assert isinstance(outcome, str) and "differs from its settings' 16" in outcome


def test_files_written_before_the_attribute_check_still_open_and_are_checked(tmp_path):
    """A 0.2 cache has no attrs_sha256: it opens, and its settings hash is still checked."""
    path = small_cache(tmp_path / "c.h5")
    with h5py.File(path, "r+") as f:
        del f.attrs["attrs_sha256"]
    assert reads_as(path) == SETTINGS8
    data = bytearray(path.read_bytes())
    data[data.find(b'"image_size":')] ^= 1
    path.write_bytes(data)
    assert "settings record fails its check" in reads_as(path)
