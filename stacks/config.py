"""Deployment configuration: read once from the CDK context into a typed, validated object.

Every value comes from ``cdk.json`` and can be overridden with ``cdk synth -c key=value``. Values given with
``-c`` arrive as strings, so numbers and booleans are parsed here. A bad value raises ``ConfigError`` with the
key, the value and what is allowed, which fails synth before anything is built.

This module does not import aws_cdk, so the CLI can read the same configuration without starting jsii.
"""

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from stacks.profiles import DEFAULT_PROFILE, INSTANCE_TYPES, PROFILES, ModelProfile

# CloudFormation and SageMaker accept 60-3600 s for both EndpointConfig timeouts.
SAGEMAKER_TIMEOUT_RANGE_SECONDS = (60, 3600)

# Stack names, SSM parameter paths, the endpoint name and the bucket name are built from the prefix. The
# bucket name "<prefix>-models-<account>-<region>" must fit S3's 63 characters, so the prefix has at most 20.
NAME_PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$")


# Well above the on-demand price of any supported instance type; a larger value is a typo.
MAX_HOURLY_PRICE_USD = 1000.0


# Bucket name starts that S3 reserves (general purpose bucket naming rules).
RESERVED_BUCKET_NAME_STARTS = ("xn--", "sthree-", "amzn-s3-demo-")

# An ECR image tag: up to 128 letters, digits, underscores, periods and hyphens, not starting with . or -.
IMAGE_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# Archive endings that the container cannot load as a weights folder.
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".gz", ".zip")

# Part of the GPU memory that the weights may fill. The rest is for the KV cache, activations and CUDA context.
MAX_WEIGHTS_SHARE_OF_GPU_MEMORY = 0.85


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


@dataclass(frozen=True)
class DeploymentConfig:
    """The validated configuration of one deployment."""

    name_prefix: str
    profile: ModelProfile
    instance_type: str
    instance_count: int
    tensor_parallel_degree: int
    image_tag: str
    model_data_download_timeout_seconds: int
    container_startup_health_check_timeout_seconds: int
    # Key prefix of the weights in the model bucket, with a trailing slash.
    weights_prefix: str
    keep_weights_on_destroy: bool
    # Adopt the bucket that an earlier deployment kept on destroy instead of creating it.
    use_existing_bucket: bool
    # Price of one running hour of the endpoint, for the cost figures of status, the dashboard and cost.
    hourly_price_usd: float
    # Context keys that other parts of the app read; kept raw here and validated by their owners.
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def endpoint_name(self) -> str:
        return f"{self.name_prefix}-endpoint"

    @property
    def ssm_prefix(self) -> str:
        return f"/{self.name_prefix}"

    @property
    def bucket_name_pattern(self) -> str:
        """Bucket name with ``{account}`` and ``{region}`` placeholders, filled with CDK tokens or real values."""
        return f"{self.name_prefix}-models-{{account}}-{{region}}"

    def stack_name(self, part: str) -> str:
        return f"{self.name_prefix}-{part}"


ContextGetter = Callable[[str], Any]


def _parse_int(key: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} is invalid: expected a whole number")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key}={value!r} is invalid: expected a whole number") from None

    if minimum is not None and number < minimum or maximum is not None and number > maximum:
        allowed = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{key}={value!r} is out of range: allowed {allowed}")

    return number


def parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value

    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{key}={value!r} is invalid: allowed true or false")


def _parse_profile(value: Any) -> ModelProfile:
    if value not in PROFILES:
        allowed = ", ".join(sorted(PROFILES))
        raise ConfigError(f"profile={value!r} is not a known profile: allowed {allowed}")
    return PROFILES[value]


def _parse_name_prefix(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PREFIX_PATTERN.match(value):
        raise ConfigError(
            f"namePrefix={value!r} is invalid: use 2-20 lowercase letters, digits and hyphens, "
            "starting with a letter and not ending with a hyphen"
        )
    if value.startswith(RESERVED_BUCKET_NAME_STARTS) or "--" in value:
        raise ConfigError(
            f"namePrefix={value!r} is invalid: the model bucket's name starts with it, and S3 rejects names that "
            f"start with {', '.join(RESERVED_BUCKET_NAME_STARTS)} or contain two hyphens in a row"
        )
    return value


def _parse_instance_type(value: Any) -> str:
    if value not in INSTANCE_TYPES:
        allowed = ", ".join(sorted(INSTANCE_TYPES))
        raise ConfigError(f"instanceType={value!r} is not a supported GPU instance type: allowed {allowed}")
    return value


def _check_tensor_parallel_degree(degree: int, instance_type: str) -> None:
    gpus = INSTANCE_TYPES[instance_type].gpus
    if degree != gpus:
        raise ConfigError(
            f"tensorParallelDegree={degree} does not match instanceType={instance_type}, which has {gpus} GPU(s): "
            f"set tensorParallelDegree={gpus}. A smaller degree starts several model copies that each run out "
            "of GPU memory."
        )


def _parse_weights_prefix(value: Any, profile: ModelProfile) -> str:
    text = f"weights/{profile.name}/" if value in (None, "") else str(value)
    if text.lower().rstrip("/").endswith(ARCHIVE_SUFFIXES):
        raise ConfigError(
            f"weightsPrefix={text!r} points at an archive: the container loads uncompressed files, so give "
            "the S3 key prefix of the weights folder, for example weights/bloom-176b-int8/"
        )
    if text.startswith("s3://") or text.startswith("/"):
        raise ConfigError(
            f"weightsPrefix={text!r} is invalid: give a key prefix inside the model bucket, such as "
            "weights/bloom-176b-int8/, not a URI or an absolute path"
        )
    if any(part in ("", ".", "..") for part in text.rstrip("/").split("/")):
        raise ConfigError(
            f"weightsPrefix={text!r} is invalid: use plain folder names separated by single slashes, without "
            "'.' or '..', for example weights/bloom-176b-int8/"
        )
    return text if text.endswith("/") else text + "/"


def _parse_image_tag(value: Any, profile: ModelProfile) -> str:
    text = str(value)
    if not IMAGE_TAG_PATTERN.match(text):
        raise ConfigError(
            f"imageTag={text!r} is invalid: an image tag has up to 128 letters, digits, '_', '.' and '-', "
            "for example 0.33.0-lmi15.0.0-cu128"
        )
    if profile.engine == "DeepSpeed" and "deepspeed" not in text:
        raise ConfigError(
            f"imageTag={text!r} cannot serve profile {profile.name}: its pre-sharded checkpoint loads only on the "
            f"DeepSpeed image family (tags with 'deepspeed', removed from LMI in 0.28.0), such as {profile.image_tag}"
        )
    return text


def _check_gpu_memory(profile: ModelProfile, instance_type: str) -> None:
    spec = INSTANCE_TYPES[instance_type]
    total_gb = spec.gpus * spec.gpu_memory_gb
    if profile.weights_size_gb > MAX_WEIGHTS_SHARE_OF_GPU_MEMORY * total_gb:
        raise ConfigError(
            f"instanceType={instance_type} has {spec.gpus} x {spec.gpu_memory_gb} GB of GPU memory, too little for "
            f"the about {profile.weights_size_gb} GB of weights of {profile.name} plus its KV cache: choose an "
            f"instance type with more GPU memory, such as {profile.instance_type}"
        )


def parse_hourly_price(key: str, value: Any) -> float:
    """Return a finite price in USD per instance hour, above 0 and at most MAX_HOURLY_PRICE_USD."""
    message = f"{key}={value!r} is invalid: expected a price in USD per instance hour above 0 and at most "
    if isinstance(value, bool):
        raise ConfigError(message + f"{MAX_HOURLY_PRICE_USD:g}")
    try:
        price = float(str(value).strip())
    except ValueError:
        raise ConfigError(message + f"{MAX_HOURLY_PRICE_USD:g}") from None
    if not 0 < price <= MAX_HOURLY_PRICE_USD:
        raise ConfigError(message + f"{MAX_HOURLY_PRICE_USD:g}")
    return price


def _parse_timeout(key: str, value: Any) -> int:
    low, high = SAGEMAKER_TIMEOUT_RANGE_SECONDS
    try:
        return _parse_int(key, value, minimum=low, maximum=high)
    except ConfigError as error:
        raise ConfigError(f"{error}; SageMaker accepts {low}-{high} seconds") from None


def load_config(get: ContextGetter) -> DeploymentConfig:
    """Build the deployment configuration from a context lookup such as ``app.node.try_get_context``."""

    def value(key: str, default: Any = None) -> Any:
        found = get(key)
        return default if found is None else found

    profile = _parse_profile(value("profile", DEFAULT_PROFILE))
    instance_type = _parse_instance_type(value("instanceType", profile.instance_type))
    tensor_parallel_degree = _parse_int(
        "tensorParallelDegree", value("tensorParallelDegree", profile.tensor_parallel_degree), minimum=1
    )
    _check_tensor_parallel_degree(tensor_parallel_degree, instance_type)
    _check_gpu_memory(profile, instance_type)

    return DeploymentConfig(
        name_prefix=_parse_name_prefix(value("namePrefix", "bloom")),
        profile=profile,
        instance_type=instance_type,
        instance_count=_parse_int("instanceCount", value("instanceCount", 1), minimum=1, maximum=10),
        tensor_parallel_degree=tensor_parallel_degree,
        image_tag=_parse_image_tag(value("imageTag", profile.image_tag), profile),
        model_data_download_timeout_seconds=_parse_timeout(
            "modelDataDownloadTimeoutSeconds",
            value("modelDataDownloadTimeoutSeconds", profile.model_data_download_timeout_seconds),
        ),
        container_startup_health_check_timeout_seconds=_parse_timeout(
            "containerStartupHealthCheckTimeoutSeconds",
            value(
                "containerStartupHealthCheckTimeoutSeconds",
                profile.container_startup_health_check_timeout_seconds,
            ),
        ),
        weights_prefix=_parse_weights_prefix(value("weightsPrefix"), profile),
        keep_weights_on_destroy=parse_bool("keepWeightsOnDestroy", value("keepWeightsOnDestroy", True)),
        use_existing_bucket=parse_bool("useExistingBucket", value("useExistingBucket", False)),
        hourly_price_usd=parse_hourly_price("hourlyPriceUsd", value("hourlyPriceUsd", profile.hourly_price_usd)),
        extra={key: get(key) for key in EXTRA_KEYS if get(key) is not None},
    )


# Context keys read by other parts of the app (API, control plane, staging); listed so that load_config
# hands them on in one place.
EXTRA_KEYS = (
    "usagePlans",
    "invokeConcurrency",
    "reserveInvokeConcurrency",
    "schedules",
    "scheduleTimezone",
    "idleStopMinutes",
    "manualStartMaxHours",
    "notificationEmail",
    "hourlyPriceUsd",
    "weightsRevision",
    "hubTokenSecretName",
    "hubEndpoint",
)


def parse_json_context(key: str, value: Any) -> Any:
    """Return a structured context value; ``-c key='[...]'`` arrives as a JSON string."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{key}={value!r} is not valid JSON: {error.msg}") from None
    return value


def with_overrides(config: DeploymentConfig, **changes: Any) -> DeploymentConfig:
    """Return a copy of the configuration with some fields changed, for tests."""
    return replace(config, **changes)
