"""Features in and out as per-video .npy files (the video_features layout)."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from test_train import ordered_videos, write_cache

from vidcache.features.cache import CacheReader
from vidcache.pipeline.cli import cli


def test_export_then_import_gives_back_the_same_features_timestamps_and_labels(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=3))
    out = tmp_path / "npy"
    result = CliRunner().invoke(cli, ["export", str(cache), str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "up" / "v_up_g00_c01_inceptionv3.npy").is_file()
    assert (out / "up" / "v_up_g00_c01_timestamps_ms.npy").is_file()
    back = tmp_path / "back.h5"
    args = ["import", str(out), "-o", str(back), "--backbone-name", "inceptionv3", "--fps", "5"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    with CacheReader(cache) as a, CacheReader(back) as b:
        assert list(a.entries()) == list(b.entries())
        assert b.settings == a.settings  # vidcache's own export comes back as it was
        for video_id, entry in a.entries().items():
            assert b.entries()[video_id].label == entry.label
            np.testing.assert_array_equal(a.features(video_id), b.features(video_id))
            np.testing.assert_allclose(a.timestamps(video_id), b.timestamps(video_id))
    run = tmp_path / "run"  # train-rnn works on imported features
    train = ["train-rnn", str(back), "-o", str(run), "--epochs", "1", "--units", "4", "-q"]
    assert CliRunner().invoke(cli, train).exit_code == 0
    mixed = CliRunner().invoke(cli, ["train-rnn", str(cache), str(back), "-o", str(tmp_path / "m")])
    assert mixed.exit_code == 1 and "is in both" in mixed.output  # the same videos twice


def test_a_plain_numpy_folder_in_the_video_features_layout_imports(tmp_path):
    folder = tmp_path / "vf"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for clip in range(2):
            np.save(folder / label / f"c{clip}_resnet.npy", rng.random((4, 16), np.float32))
    np.save(folder / "a" / "c0_timestamps_ms.npy", np.array([0.0, 500.0, 1000.0, 1500.0]))
    np.save(folder / "b" / "bad_resnet.npy", rng.random(16))  # one vector: skipped
    out = tmp_path / "c.h5"
    args = ["import", str(folder), "-o", str(out), "--backbone-name", "resnet", "--fps", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "skipped" in result.output
    assert "bad_resnet.npy" in result.output
    with CacheReader(out) as reader:
        entries = reader.entries()
        assert sorted(entries) == ["a/c0", "a/c1", "b/c0", "b/c1"]
        assert entries["a/c1"].label == "a"
        np.testing.assert_allclose(reader.timestamps("a/c0"), [0, 0.5, 1.0, 1.5])
        np.testing.assert_allclose(reader.timestamps("b/c1"), [0, 0.25, 0.5, 0.75])
        np.testing.assert_array_equal(
            reader.features("b/c1"), np.load(folder / "b" / "c1_resnet.npy")
        )


def test_an_export_imports_back_with_no_option_and_the_same_inspect(tmp_path):
    cache = write_cache(tmp_path / "f.h5", ordered_videos(per_class=2))
    out, back = tmp_path / "npy", tmp_path / "back.h5"
    assert CliRunner().invoke(cli, ["export", str(cache), str(out)]).exit_code == 0
    result = CliRunner().invoke(cli, ["import", str(out), "-o", str(back)])
    assert result.exit_code == 0, result.output

    def summary(path):
        import json

        data = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
        for key in ("path", "created", "updated", "size_bytes", "file_bytes"):
            data.pop(key, None)
        data["versions"].pop("imported_from", None)
        return data

    assert summary(back) == summary(cache)
    with CacheReader(cache) as a, CacheReader(back) as b:
        assert a.settings == b.settings
        for video_id, entry in a.entries().items():
            copy = b.entries()[video_id]
            assert (copy.label, copy.path) == (entry.label, entry.path)
            np.testing.assert_equal(copy.duration, entry.duration)  # NaN (unknown) too
            np.testing.assert_array_equal(a.features(video_id), b.features(video_id))
    # A settings.json that no longer hashes to the manifest's is refused, in one line.
    import json

    settings = out / "settings.json"
    edited = json.loads(settings.read_text())
    edited["image_size"] += 1
    settings.write_text(json.dumps(edited))
    result = CliRunner().invoke(cli, ["import", str(out), "-o", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "do not hash to the settings_sha256" in result.output
    # Another tool's folder still needs to say what made the features.
    (out / "settings.json").unlink()
    result = CliRunner().invoke(cli, ["import", str(out), "-o", str(tmp_path / "y.h5")])
    assert result.exit_code == 1 and "--backbone-name NAME --fps F" in result.output
