"""Model profiles: what each supported BLOOM variant needs to be served on SageMaker.

A profile is plain data. The configuration layer (``stacks/config.py``) picks one, applies the user's
overrides and validates the result; the stacks only read the validated values.
"""

from dataclasses import dataclass

from stacks.invoke_api_package import schema

# ECR repository of the LMI (DJL Serving) images among the AWS Deep Learning Containers. The registry account
# differs by region, so model_hosting.py resolves it at deploy time from aws-cdk-lib's region facts.
DLC_REPOSITORY = "djl-inference"

# Generation parameters of the public API, by name, from the invoke function's schema. Each profile allows a
# subset of these.
ALL_GENERATION_PARAMETERS = schema.ALL_GENERATION_PARAMETERS


@dataclass(frozen=True)
class InstanceSpec:
    """GPU layout of a SageMaker instance type, used to check the tensor parallel degree."""

    gpus: int
    gpu_memory_gb: int


# GPU instance types that can host at least the smallest profile. Source: the SageMaker pricing and
# instance type pages (GPU count and memory per GPU).
INSTANCE_TYPES: dict[str, InstanceSpec] = {
    "ml.g5.xlarge": InstanceSpec(gpus=1, gpu_memory_gb=24),
    "ml.g5.2xlarge": InstanceSpec(gpus=1, gpu_memory_gb=24),
    "ml.g5.4xlarge": InstanceSpec(gpus=1, gpu_memory_gb=24),
    "ml.g5.12xlarge": InstanceSpec(gpus=4, gpu_memory_gb=24),
    "ml.g5.48xlarge": InstanceSpec(gpus=8, gpu_memory_gb=24),
    "ml.g6.xlarge": InstanceSpec(gpus=1, gpu_memory_gb=24),
    "ml.g6.2xlarge": InstanceSpec(gpus=1, gpu_memory_gb=24),
    "ml.g6.12xlarge": InstanceSpec(gpus=4, gpu_memory_gb=24),
    "ml.g6.48xlarge": InstanceSpec(gpus=8, gpu_memory_gb=24),
    "ml.p4d.24xlarge": InstanceSpec(gpus=8, gpu_memory_gb=40),
    "ml.p4de.24xlarge": InstanceSpec(gpus=8, gpu_memory_gb=80),
    "ml.p5.48xlarge": InstanceSpec(gpus=8, gpu_memory_gb=80),
}


@dataclass(frozen=True)
class ModelProfile:
    """Everything that differs between the supported models, with the reason for each sizing choice."""

    name: str
    description: str
    hub_repository: str
    weights_size_gb: int
    instance_type: str
    image_tag: str
    engine: str
    tensor_parallel_degree: int
    dtype: str
    model_data_download_timeout_seconds: int
    container_startup_health_check_timeout_seconds: int
    timeouts_reason: str
    # Prompt plus new tokens that the container can hold for one request.
    max_total_tokens: int
    # Upper bound on new tokens per request, sized so that generation ends inside the invoke time budget.
    max_new_tokens: int
    max_num_beams: int
    # Measured or published generation speed, used to size max_new_tokens and the timeouts.
    seconds_per_token: float
    supported_parameters: tuple[str, ...]
    hourly_price_usd: float
    hourly_price_source: str


BLOOM_176B_INT8 = ModelProfile(
    name="bloom-176b-int8",
    description="BLOOM-176B, pre-sharded INT8 DeepSpeed checkpoint on 8 x A100 40 GB",
    hub_repository="microsoft/bloom-deepspeed-inference-int8",
    weights_size_gb=180,
    instance_type="ml.p4d.24xlarge",
    # The pre-sharded INT8 checkpoint loads only on the DeepSpeed image family; DeepSpeed left LMI in 0.28.0
    # and newer images fail with "Bloom models only support fp16". 0.21.0 with DeepSpeed 0.8.3 is the
    # version AWS's own BLOOM-176B example used.
    image_tag="0.21.0-deepspeed0.8.3-cu117",
    engine="DeepSpeed",
    tensor_parallel_degree=8,
    dtype="int8",
    model_data_download_timeout_seconds=3600,
    container_startup_health_check_timeout_seconds=3600,
    timeouts_reason=(
        "About 180 GB are copied from S3 to the instance and then loaded onto 8 GPUs; the original write-up "
        "measured about 18 minutes from CreateEndpoint to InService. Both timeouts sit at CloudFormation's "
        "maximum of 3600 s so that a slow download or load is not cut short."
    ),
    # DeepSpeed inference in that image reserves 1024 tokens for prompt plus generation by default.
    max_total_tokens=1024,
    # About 0.1 s per token (AWS's published figure for this checkpoint on 8 x A100), so 200 tokens take
    # about 20 s and fit the API's time budget, which API Gateway's 29 s integration timeout bounds.
    max_new_tokens=200,
    # DeepSpeed 0.8.3's InferenceEngine.generate raises NotImplementedError for num_beams > 1: its
    # kernel-injected KV cache cannot be reordered between beams.
    max_num_beams=1,
    seconds_per_token=0.1,
    supported_parameters=ALL_GENERATION_PARAMETERS,
    hourly_price_usd=37.69,
    hourly_price_source="SageMaker real-time inference, ml.p4d.24xlarge, us-east-1, on-demand (2024 price list)",
)

# Current LMI image, used by the fp16 profiles: with vLLM for bloom-176b, with the project's transformers
# handler for the single-GPU profiles.
CURRENT_LMI_IMAGE_TAG = "0.33.0-lmi15.0.0-cu128"

# Every generate() parameter of the public API: the profiles served by the project's handler with transformers.
TRANSFORMERS_PARAMETERS = ALL_GENERATION_PARAMETERS

VLLM_PARAMETERS = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "do_sample",
    "seed",
    "stop",
)

BLOOM_176B = ModelProfile(
    name="bloom-176b",
    description="BLOOM-176B in fp16 on 8 x A100 80 GB",
    hub_repository="bigscience/bloom",
    weights_size_gb=352,
    instance_type="ml.p4de.24xlarge",
    image_tag=CURRENT_LMI_IMAGE_TAG,
    engine="Python",
    tensor_parallel_degree=8,
    dtype="fp16",
    model_data_download_timeout_seconds=3600,
    container_startup_health_check_timeout_seconds=3600,
    timeouts_reason=(
        "About 352 GB are copied and loaded onto 8 GPUs, twice the INT8 checkpoint; both timeouts sit at "
        "CloudFormation's maximum of 3600 s."
    ),
    max_total_tokens=2048,
    max_new_tokens=250,
    max_num_beams=1,
    seconds_per_token=0.08,
    supported_parameters=VLLM_PARAMETERS,
    hourly_price_usd=47.11,
    hourly_price_source="estimate: ml.p4de.24xlarge is not in every region's price list; check your region",
)

BLOOM_7B1 = ModelProfile(
    name="bloom-7b1",
    description="BLOOM-7B1 in fp16 on one A10G 24 GB",
    hub_repository="bigscience/bloom-7b1",
    weights_size_gb=15,
    instance_type="ml.g5.2xlarge",
    image_tag=CURRENT_LMI_IMAGE_TAG,
    engine="Python",
    tensor_parallel_degree=1,
    dtype="fp16",
    model_data_download_timeout_seconds=1200,
    container_startup_health_check_timeout_seconds=1200,
    timeouts_reason="About 15 GB to copy and load onto one GPU: a few minutes, with room for a slow start.",
    max_total_tokens=2048,
    max_new_tokens=512,
    max_num_beams=5,
    seconds_per_token=0.03,
    supported_parameters=TRANSFORMERS_PARAMETERS,
    hourly_price_usd=1.52,
    hourly_price_source="SageMaker real-time inference, ml.g5.2xlarge, us-east-1, on-demand (2024 price list)",
)

BLOOM_1B7 = ModelProfile(
    name="bloom-1b7",
    description="BLOOM-1B7 in fp16 on one A10G 24 GB: the cheap trial run before the 176B model",
    hub_repository="bigscience/bloom-1b7",
    weights_size_gb=4,
    instance_type="ml.g5.xlarge",
    image_tag=CURRENT_LMI_IMAGE_TAG,
    engine="Python",
    tensor_parallel_degree=1,
    dtype="fp16",
    model_data_download_timeout_seconds=600,
    container_startup_health_check_timeout_seconds=600,
    timeouts_reason="About 4 GB to copy and load onto one GPU: well under 10 minutes.",
    max_total_tokens=2048,
    max_new_tokens=512,
    max_num_beams=5,
    seconds_per_token=0.015,
    supported_parameters=TRANSFORMERS_PARAMETERS,
    hourly_price_usd=1.41,
    hourly_price_source="SageMaker real-time inference, ml.g5.xlarge, us-east-1, on-demand (2024 price list)",
)

PROFILES: dict[str, ModelProfile] = {
    profile.name: profile for profile in (BLOOM_176B_INT8, BLOOM_176B, BLOOM_7B1, BLOOM_1B7)
}

DEFAULT_PROFILE = BLOOM_176B_INT8.name
