"""Configuration loading: defaults, overrides from -c, and one test per invalid value."""

import pytest

from stacks.config import ConfigError, load_config
from stacks.profiles import PROFILES
from tests.conftest import CDK_JSON_CONTEXT


def config_from(**overrides):
    context = {**CDK_JSON_CONTEXT, **overrides}
    return load_config(context.get)


def test_defaults_select_bloom_176b_int8():
    config = config_from()

    assert config.profile.name == "bloom-176b-int8"
    assert config.instance_type == "ml.p4d.24xlarge"
    assert config.tensor_parallel_degree == 8
    assert config.instance_count == 1
    assert config.weights_prefix == "weights/bloom-176b-int8/"
    assert config.keep_weights_on_destroy is True
    assert config.endpoint_name == "bloom-endpoint"


def test_string_values_from_command_line_are_parsed():
    config = config_from(instanceCount="2", keepWeightsOnDestroy="false", modelDataDownloadTimeoutSeconds="900")

    assert config.instance_count == 2
    assert config.keep_weights_on_destroy is False
    assert config.model_data_download_timeout_seconds == 900


def test_hourly_price_default_and_override():
    assert config_from().hourly_price_usd == config_from().profile.hourly_price_usd
    assert config_from(hourlyPriceUsd="32.77").hourly_price_usd == 32.77


def test_small_profile_uses_one_gpu():
    config = config_from(profile="bloom-1b7")

    assert config.tensor_parallel_degree == 1
    assert config.instance_type == "ml.g5.xlarge"
    assert config.weights_prefix == "weights/bloom-1b7/"


def test_name_prefix_changes_every_name():
    config = config_from(namePrefix="team-b")

    assert config.endpoint_name == "team-b-endpoint"
    assert config.stack_name("hosting") == "team-b-hosting"
    assert config.ssm_prefix == "/team-b"
    assert config.bucket_name_pattern.startswith("team-b-models-")


def test_profiles_have_timeout_reasons():
    for profile in PROFILES.values():
        config = config_from(profile=profile.name)

        assert profile.timeouts_reason
        assert config.tensor_parallel_degree == profile.tensor_parallel_degree


@pytest.mark.parametrize(
    ("overrides", "expected_fragments"),
    [
        pytest.param({"profile": "bloom-560m"}, ["profile='bloom-560m'", "bloom-176b-int8", "bloom-1b7"], id="unknown-profile"),
        pytest.param(
            {"tensorParallelDegree": 4},
            ["tensorParallelDegree=4", "ml.p4d.24xlarge", "8 GPU", "tensorParallelDegree=8"],
            id="tensor-parallel-below-gpu-count",
        ),
        pytest.param(
            {"profile": "bloom-1b7", "instanceType": "ml.g5.12xlarge"},
            ["tensorParallelDegree=1", "ml.g5.12xlarge", "4 GPU"],
            id="tensor-parallel-below-gpu-count-small-profile",
        ),
        pytest.param(
            {"weightsPrefix": "weights/bloom/model.tar.gz"},
            ["weightsPrefix='weights/bloom/model.tar.gz'", "archive", "uncompressed"],
            id="weights-tarball",
        ),
        pytest.param({"weightsPrefix": "s3://other/weights/"}, ["weightsPrefix='s3://other/weights/'"], id="weights-uri"),
        pytest.param({"instanceCount": 0}, ["instanceCount=0", "1..10"], id="instance-count-zero"),
        pytest.param({"instanceCount": "two"}, ["instanceCount='two'", "whole number"], id="instance-count-text"),
        pytest.param(
            {"modelDataDownloadTimeoutSeconds": 7200},
            ["modelDataDownloadTimeoutSeconds=7200", "60..3600"],
            id="download-timeout-above-max",
        ),
        pytest.param(
            {"containerStartupHealthCheckTimeoutSeconds": 30},
            ["containerStartupHealthCheckTimeoutSeconds=30", "60..3600"],
            id="startup-timeout-below-min",
        ),
        pytest.param({"instanceType": "ml.t3.medium"}, ["instanceType='ml.t3.medium'", "ml.p4d.24xlarge"], id="cpu-instance"),
        pytest.param({"namePrefix": "Bloom_Prod"}, ["namePrefix='Bloom_Prod'", "lowercase"], id="name-prefix-invalid"),
        pytest.param(
            {"namePrefix": "a-very-long-deployment-prefix"},
            ["namePrefix='a-very-long-deployment-prefix'", "2-20"],
            id="name-prefix-too-long",
        ),
        pytest.param({"namePrefix": "xn--bloom"}, ["namePrefix='xn--bloom'", "xn--"], id="name-prefix-reserved-by-s3"),
        pytest.param({"namePrefix": "sthree-x"}, ["namePrefix='sthree-x'", "sthree-"], id="name-prefix-sthree"),
        pytest.param(
            {"imageTag": "0.28.0-lmi10.0.0-cu124"},
            ["imageTag='0.28.0-lmi10.0.0-cu124'", "bloom-176b-int8", "DeepSpeed image family"],
            id="int8-on-image-without-deepspeed",
        ),
        pytest.param({"imageTag": "x y"}, ["imageTag='x y'", "128 letters"], id="image-tag-invalid"),
        pytest.param(
            {"profile": "bloom-176b", "instanceType": "ml.p4d.24xlarge"},
            ["instanceType=ml.p4d.24xlarge", "8 x 40 GB", "352 GB", "ml.p4de.24xlarge"],
            id="fp16-176b-does-not-fit-40gb-gpus",
        ),
        pytest.param(
            {"profile": "bloom-176b", "instanceType": "ml.g5.48xlarge"},
            ["instanceType=ml.g5.48xlarge", "8 x 24 GB"],
            id="fp16-176b-does-not-fit-a10g",
        ),
        pytest.param({"weightsPrefix": "weights/model.zip"}, ["weightsPrefix='weights/model.zip'", "archive"], id="weights-zip"),
        pytest.param(
            {"weightsPrefix": "weights/model.tar.gz/"}, ["weightsPrefix='weights/model.tar.gz/'", "archive"], id="weights-tarball-slash"
        ),
        pytest.param({"weightsPrefix": "../../other/"}, ["weightsPrefix='../../other/'", "'..'"], id="weights-parent-folder"),
        pytest.param({"hourlyPriceUsd": "cheap"}, ["hourlyPriceUsd='cheap'", "price in USD per instance hour"], id="price-text"),
        pytest.param({"hourlyPriceUsd": -1}, ["hourlyPriceUsd=-1", "above 0 and at most 1000"], id="price-negative"),
        pytest.param({"keepWeightsOnDestroy": "maybe"}, ["keepWeightsOnDestroy='maybe'", "true or false"], id="bool-invalid"),
    ],
)
def test_invalid_value_names_key_value_and_allowed(overrides, expected_fragments):
    with pytest.raises(ConfigError) as raised:
        config_from(**overrides)

    for fragment in expected_fragments:
        assert fragment in str(raised.value)


def test_invalid_value_fails_synth(synth):
    """A bad -c value stops synth before any template is written."""
    with pytest.raises(ConfigError, match="tensorParallelDegree=2"):
        synth(tensorParallelDegree=2)
