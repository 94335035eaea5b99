import pytest

from vidcache.features.errors import SettingsMismatch
from vidcache.features.settings import FeatureSettings, SamplingSpec, check_compatible


def make(**changes):
    values = dict(weights="random:seed=0", weights_sha256="abc", image_size=75)
    values.update(changes)
    return FeatureSettings(**values)


def test_json_round_trip_and_digest_are_stable():
    settings = make(sampling=SamplingSpec(fps=None, num_frames=16), dtype="float16")
    again = FeatureSettings.from_json(settings.to_json())
    assert again == settings
    assert again.digest() == settings.digest()
    assert make().digest() != make(image_size=76).digest()


def test_compatible_settings_pass_and_others_name_every_difference():
    check_compatible(make(), make(), cache_name="f.h5")
    with pytest.raises(SettingsMismatch) as info:
        check_compatible(make(), make(image_size=99, precision="bfloat16"), cache_name="f.h5")
    text = str(info.value)
    assert text.startswith("f.h5 holds features made with other settings (")
    assert "image_size: 75 != 99" in text and "precision: 'float32' != 'bfloat16'" in text
    assert "--" not in text  # each command adds its own advice (tests/test_cli.py)


def test_ignored_fields_are_left_out():
    check_compatible(
        make(), make(weights_sha256="other"), cache_name="f", ignore=("weights_sha256",)
    )
    with pytest.raises(SettingsMismatch):
        check_compatible(make(), make(weights_sha256="other"), cache_name="f")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_size": 74}, "image_size must be at least 75"),
        ({"resize": "squash"}, "resize must be one of"),
        ({"precision": "float16"}, "precision must be one of"),
        ({"dtype": "int8"}, "dtype must be one of"),
    ],
)
def test_invalid_settings_echo_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        make(**changes)


def test_an_extract_config_holds_the_settings_it_makes():
    from dataclasses import replace

    from vidcache.features.backbone import WeightsSpec
    from vidcache.pipeline.extraction.config import ExtractConfig

    spec = WeightsSpec("random", seed=0)
    by_fields = ExtractConfig(spec, image_size=75, sampling=SamplingSpec(fps=2), batch_size=4)
    made = by_fields.settings("ab" * 32)
    assert made == FeatureSettings.for_backbone(
        "InceptionV3", weights="random:seed=0", weights_sha256="ab" * 32, image_size=75,
        sampling=SamplingSpec(fps=2.0),
    )  # fmt: skip
    assert by_fields.image_size == by_fields.features.image_size == 75
    # From settings (--like, predict): the same config; the checksum is the loaded weights'.
    again = ExtractConfig.for_settings(made, spec, 4)
    assert again == by_fields and again.features.weights_sha256 == ""
    assert replace(again, overwrite=True).features == again.features
    with pytest.raises(TypeError, match="not both"):
        ExtractConfig(spec, made, image_size=75)
    with pytest.raises(TypeError, match="unexpected"):
        ExtractConfig(spec, image_sise=75)
    with pytest.raises(ValueError, match="at least 75"):
        ExtractConfig(spec, image_size=10)
