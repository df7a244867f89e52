"""DJL Serving handler for the BLOOM profiles that use it, and the container contract it serves.

Two loaders, chosen by ``option.engine_loader`` in the profile's serving.properties:

- ``deepspeed`` (bloom-176b-int8): the LMI image ``djl-inference:0.21.0-deepspeed0.8.3-cu117``. DJL Serving
  starts one Python process per GPU (tensor parallel degree 8) and calls ``handle`` in each; the first call
  loads the pre-sharded INT8 checkpoint with DeepSpeed inference.
- ``transformers`` (bloom-1b7, bloom-7b1): a current LMI image, one GPU, the model in fp16 with plain
  transformers, so that every ``generate()`` parameter of the original BLOOM write-up works, beam search
  included. Local mode uses the same loader on the CPU.

The first call carries the model properties from serving.properties (without the ``option.`` prefix, plus
``model_dir``).

Container contract. The invoke Lambda adapts the public API to this one schema:

- request: ``{"inputs": "<prompt>", "parameters": {...}}`` with ``generate()`` argument names
  (see ``PARAMETER_CHECKS``), plus ``seed`` and ``stop``, which the handler applies itself.
- response (200): ``{"generated_text": "<completion without the prompt>",
  "details": {"prompt_tokens": N, "generated_tokens": M}}``.
- error: ``{"error": "<code>", "message": "<text>"}`` with status 400 for an invalid request
  (``invalid_request``, ``token_limit_exceeded``) or 500 when generation fails (``generation_failed``).
  SageMaker returns a non-200 container status to the caller as ModelError (HTTP 424) with
  ``OriginalStatusCode`` and ``OriginalMessage``.

Request parsing, validation, parameter mapping and response shaping are plain functions over an engine
object, so that tests and the local model server run them without torch, DeepSpeed or djl_python. Those
packages are imported only inside the engine code at the end of this file.

The container's Python may be older than the project's, so this file avoids syntax newer than Python 3.8.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

LOGGER = logging.getLogger(__name__)

# DeepSpeed inference sizes its KV cache for prompt plus new tokens, 1024 by default (max_tokens, alias of
# DeepSpeedInferenceConfig.max_out_tokens). Past it the container fails with an allocation error.
DEFAULT_MAX_TOTAL_TOKENS = 1024

# DeepSpeed inference 0.8.3 raises NotImplementedError for num_beams > 1 (a guard added in December 2022),
# because its kernel-injected KV cache cannot be reordered between beams.
DEFAULT_MAX_NUM_BEAMS = 1

# New tokens generated when a request sets no max_new_tokens.
DEFAULT_MAX_NEW_TOKENS = 64

MAX_STOP_SEQUENCES = 8

# Upper bound of a seed: torch.manual_seed accepts any 64-bit value, numpy only 32-bit ones.
MAX_SEED = 2**32 - 1

INVALID_REQUEST = "invalid_request"
TOKEN_LIMIT_EXCEEDED = "token_limit_exceeded"
GENERATION_FAILED = "generation_failed"


class RequestError(Exception):
    """An invalid request: the container responds with status 400 and this error code and message."""

    def __init__(self, message: str, code: str = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------------------------
# Parameter checks: each returns the value to pass on, or raises RequestError.
# ---------------------------------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(name: str, value: Any, minimum: int, maximum: Optional[int] = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(f"parameters.{name} must be an integer, got {json.dumps(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"{minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
        raise RequestError(f"parameters.{name}={value} is out of range: allowed {allowed}")
    return value


def _positive_number(name: str, value: Any, maximum: Optional[float] = None) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise RequestError(f"parameters.{name} must be a number, got {json.dumps(value)}")
    if value <= 0 or (maximum is not None and value > maximum):
        allowed = f"greater than 0 and at most {maximum}" if maximum is not None else "greater than 0"
        raise RequestError(f"parameters.{name}={value} is out of range: allowed {allowed}")
    return float(value)


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"parameters.{name} must be true or false, got {json.dumps(value)}")
    return value


def _stop_sequences(name: str, value: Any) -> Tuple[str, ...]:
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list) or not all(isinstance(item, str) and item for item in sequences):
        raise RequestError(f"parameters.{name} must be a non-empty string or a list of non-empty strings")
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise RequestError(f"parameters.{name} has {len(sequences)} sequences: at most {MAX_STOP_SEQUENCES} allowed")
    return tuple(sequences)


PARAMETER_CHECKS: Dict[str, Callable[[str, Any], Any]] = {
    "max_new_tokens": lambda name, value: _integer(name, value, minimum=1),
    "min_length": lambda name, value: _integer(name, value, minimum=0),
    "temperature": lambda name, value: _positive_number(name, value),
    "top_p": lambda name, value: _positive_number(name, value, maximum=1.0),
    "top_k": lambda name, value: _integer(name, value, minimum=0),
    "num_beams": lambda name, value: _integer(name, value, minimum=1),
    "no_repeat_ngram_size": lambda name, value: _integer(name, value, minimum=0),
    "repetition_penalty": lambda name, value: _positive_number(name, value),
    "do_sample": _boolean,
    "seed": lambda name, value: _integer(name, value, minimum=0, maximum=MAX_SEED),
    "stop": _stop_sequences,
}

# Parameters that the handler applies itself instead of passing them to generate().
HANDLER_PARAMETERS = ("seed", "stop")


# ---------------------------------------------------------------------------------------------------------------
# Contract: request parsing, limits, response shaping.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request: the prompt, the keyword arguments for generate(), and the handler's own options."""

    prompt: str
    generate_kwargs: Dict[str, Any]
    seed: Optional[int] = None
    stop: Tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    """The output of an engine: the completion without the prompt, and the token counts."""

    text: str
    prompt_tokens: int
    generated_tokens: int


@dataclass(frozen=True)
class ServiceLimits:
    """Limits of the loaded model, read from the model properties."""

    max_total_tokens: int = DEFAULT_MAX_TOTAL_TOKENS
    max_num_beams: int = DEFAULT_MAX_NUM_BEAMS

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> ServiceLimits:
        return cls(
            max_total_tokens=_property_int(properties, "max_tokens", DEFAULT_MAX_TOTAL_TOKENS),
            max_num_beams=_property_int(properties, "max_num_beams", DEFAULT_MAX_NUM_BEAMS),
        )


def _property_int(properties: Mapping[str, str], key: str, default: int) -> int:
    value = properties.get(key)
    if value is None or str(value).strip() == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"option.{key}={value!r} in serving.properties is invalid: expected a whole number") from None
    if number < 1:
        raise ValueError(f"option.{key}={value!r} in serving.properties is invalid: expected at least 1")
    return number


def parse_request(body: bytes) -> GenerationRequest:
    """Parse and validate a request body of the container contract, or raise RequestError."""
    try:
        payload = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(f"request body is not valid JSON: {error}") from None

    if not isinstance(payload, dict):
        raise RequestError('request body must be a JSON object: {"inputs": "<prompt>", "parameters": {...}}')

    prompt = payload.get("inputs")
    if prompt is None:
        hint = ' The body has "input"; the key is "inputs".' if "input" in payload else ""
        raise RequestError('missing "inputs": the prompt as a string.' + hint)
    if not isinstance(prompt, str):
        raise RequestError('"inputs" must be a string with one prompt. Batches are not supported.')
    if not prompt:
        raise RequestError('"inputs" is empty: send a prompt of at least one character')

    unknown_keys = sorted(set(payload) - {"inputs", "parameters"})
    if unknown_keys:
        raise RequestError(f'unknown keys {unknown_keys}: the body has only "inputs" and "parameters"')

    parameters = _check_parameters(payload.get("parameters"))
    generate_kwargs = {name: value for name, value in parameters.items() if name not in HANDLER_PARAMETERS}
    generate_kwargs.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    return GenerationRequest(
        prompt=prompt,
        generate_kwargs=generate_kwargs,
        seed=parameters.get("seed"),
        stop=parameters.get("stop", ()),
    )


def _check_parameters(parameters: Any) -> Dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise RequestError('"parameters" must be a JSON object of generation parameters')

    unknown = sorted(set(parameters) - set(PARAMETER_CHECKS))
    if unknown:
        raise RequestError(f"unsupported parameters {unknown}: allowed are {sorted(PARAMETER_CHECKS)}")

    # A null value means "not set", as clients often send every field of their own request type.
    return {
        name: PARAMETER_CHECKS[name](name, value) for name, value in parameters.items() if value is not None
    }


def check_limits(request: GenerationRequest, prompt_tokens: int, limits: ServiceLimits) -> None:
    """Reject a request that the loaded model cannot serve: too many tokens or beams."""
    max_new_tokens = request.generate_kwargs["max_new_tokens"]
    total_tokens = prompt_tokens + max_new_tokens
    if total_tokens > limits.max_total_tokens:
        raise RequestError(
            f"the prompt ({prompt_tokens} tokens) plus max_new_tokens ({max_new_tokens}) is {total_tokens} tokens, "
            f"above this model's limit of {limits.max_total_tokens} tokens for prompt and generated text together. "
            "Shorten the prompt or lower max_new_tokens.",
            code=TOKEN_LIMIT_EXCEEDED,
        )

    num_beams = request.generate_kwargs.get("num_beams", 1)
    if num_beams > limits.max_num_beams:
        raise RequestError(
            f"parameters.num_beams={num_beams} is not supported: this model allows at most "
            f"{limits.max_num_beams} beam(s). DeepSpeed inference with kernel injection has no beam search; "
            "use greedy decoding or do_sample instead."
        )


def truncate_at_stop(text: str, stop: Tuple[str, ...]) -> str:
    """Cut the completion before the first occurrence of any stop sequence."""
    positions = [text.find(sequence) for sequence in stop]
    found = [position for position in positions if position >= 0]
    return text[: min(found)] if found else text


def build_response(result: GenerationResult) -> Dict[str, Any]:
    return {
        "generated_text": result.text,
        "details": {"prompt_tokens": result.prompt_tokens, "generated_tokens": result.generated_tokens},
    }


def error_body(code: str, message: str) -> Dict[str, str]:
    return {"error": code, "message": message}


# ---------------------------------------------------------------------------------------------------------------
# Service: the request path over an injected engine.
# ---------------------------------------------------------------------------------------------------------------


class ModelService:
    """Serve container-contract requests with an engine.

    An engine has ``count_tokens(prompt) -> int`` and
    ``generate(prompt, generate_kwargs, seed) -> GenerationResult``.
    With tensor parallelism every rank runs this same code on the same request, so validation must stay
    deterministic: a rank that rejected a request while the others generated would leave them waiting.
    """

    def __init__(self, engine: Any, limits: ServiceLimits) -> None:
        self.engine = engine
        self.limits = limits

    @classmethod
    def from_properties(
        cls, properties: Mapping[str, str], engine_loader: Callable[[Mapping[str, str]], Any]
    ) -> ModelService:
        limits = ServiceLimits.from_properties(properties)
        return cls(engine_loader(properties), limits)

    def invoke(self, body: bytes) -> Tuple[int, Dict[str, Any]]:
        """Run one request and return the HTTP status and the JSON body of the response."""
        started = time.monotonic()
        try:
            request = parse_request(body)
            prompt_tokens = self.engine.count_tokens(request.prompt)
            check_limits(request, prompt_tokens, self.limits)
        except RequestError as error:
            LOGGER.info("Rejected request: %s (%s)", error.code, error.message)
            return 400, error_body(error.code, error.message)

        try:
            result = self.engine.generate(request.prompt, dict(request.generate_kwargs), request.seed)
        except Exception as error:  # noqa: BLE001 - any engine failure becomes a 500 instead of a dead worker
            LOGGER.exception("Generation failed after %d prompt tokens", prompt_tokens)
            return 500, error_body(GENERATION_FAILED, f"generation failed: {type(error).__name__}: {error}")

        # NOTE: stop sequences only cut the returned text. Generation still runs to max_new_tokens or the end
        # token, and generated_tokens counts every token generated.
        if request.stop:
            result = GenerationResult(
                text=truncate_at_stop(result.text, request.stop),
                prompt_tokens=result.prompt_tokens,
                generated_tokens=result.generated_tokens,
            )

        LOGGER.info(
            "Generated %d tokens after %d prompt tokens in %.2f s",
            result.generated_tokens,
            result.prompt_tokens,
            time.monotonic() - started,
        )
        return 200, build_response(result)

    def handle(self, inputs: Any, output_class: Any) -> Any:
        """Adapt a djl_python Input to ``invoke`` and its result to a djl_python Output."""
        body = inputs.get_as_bytes() if not inputs.is_empty() else b""
        status, response = self.invoke(bytes(body or b""))
        output = output_class(code=status, message="OK" if status == 200 else response["error"])
        output.add_property("content-type", "application/json")
        output.add_as_json(response)
        return output


# ---------------------------------------------------------------------------------------------------------------
# Engines. Only this part imports torch, transformers and DeepSpeed.
# ---------------------------------------------------------------------------------------------------------------


def random_seed() -> int:
    return random.SystemRandom().randint(0, MAX_SEED)


@dataclass
class TransformersEngine:
    """Generation with a transformers causal LM, or a DeepSpeed InferenceEngine wrapping one.

    Every request is seeded: with ``seed`` when given, otherwise with ``seed_source()``. Under tensor
    parallelism all ranks must sample the same tokens, so the DeepSpeed loader's seed source broadcasts the
    seed of rank 0.
    """

    model: Any
    tokenizer: Any
    device: Any = "cpu"
    seed_source: Callable[[], int] = field(default=random_seed)

    def count_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt)["input_ids"])

    def generate(self, prompt: str, generate_kwargs: Dict[str, Any], seed: Optional[int]) -> GenerationResult:
        import torch

        encoded = self.tokenizer(prompt, return_tensors="pt")
        input_ids = encoded["input_ids"].to(self.device)
        attention_mask = encoded["attention_mask"].to(self.device)

        torch.manual_seed(seed if seed is not None else self.seed_source())
        with torch.no_grad():
            output_ids = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)

        prompt_tokens = input_ids.shape[1]
        new_ids = output_ids[0][prompt_tokens:]
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        return GenerationResult(text=text, prompt_tokens=prompt_tokens, generated_tokens=int(new_ids.shape[0]))


def find_checkpoint_config(model_dir: str, checkpoint: str) -> str:
    """Return the path of the DeepSpeed checkpoint description (ds_inference_config.json) in model_dir."""
    path = os.path.join(model_dir, checkpoint)
    if os.path.isfile(path):
        return path

    candidates = sorted(name for name in os.listdir(model_dir) if name.endswith("inference_config.json"))
    raise FileNotFoundError(
        f"checkpoint description {checkpoint!r} not found in {model_dir}. Found: {candidates or 'none'}. "
        "Set option.checkpoint in serving.properties to the JSON file that lists the checkpoint shards."
    )


def build_deepspeed_config(properties: Mapping[str, str]) -> Dict[str, Any]:
    """Build the init_inference config for the pre-sharded checkpoint, with dtype as a torch attribute name."""
    model_dir = properties["model_dir"]
    checkpoint = properties.get("checkpoint", "ds_inference_config.json")
    return {
        "tensor_parallel": {"tp_size": int(properties.get("tensor_parallel_degree", "1"))},
        "dtype": properties.get("dtype", "int8"),
        "checkpoint": find_checkpoint_config(model_dir, checkpoint),
        "base_dir": model_dir,
        "replace_with_kernel_inject": True,
        "max_tokens": ServiceLimits.from_properties(properties).max_total_tokens,
    }


def load_deepspeed_engine(properties: Mapping[str, str]) -> TransformersEngine:
    """Load the pre-sharded checkpoint in model_dir with DeepSpeed inference on this rank's GPU.

    The model is built on the meta device from config.json, so no rank allocates the full fp16 model. DeepSpeed
    then loads this rank's INT8 shards into the injected kernels.

    NOTE: this loader has not run outside the container because it needs 8 GPUs. Its init_inference config
    keys follow DeepSpeedInferenceConfig and the config that DJL Serving's own DeepSpeed handler builds.
    """
    import deepspeed
    import torch
    import torch.distributed as dist
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = build_deepspeed_config(properties)
    config["dtype"] = getattr(torch, config["dtype"])
    model_dir = properties["model_dir"]
    tensor_parallel_degree = config["tensor_parallel"]["tp_size"]

    local_rank = int(os.getenv("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    if tensor_parallel_degree > 1:
        deepspeed.init_distributed("nccl")

    # DeepSpeed 0.8.3 builds INT8 kernels from an fp16 module, which the meta device keeps without weights.
    model_config = AutoConfig.from_pretrained(model_dir)
    with deepspeed.OnDevice(dtype=torch.float16, device="meta"):
        model = AutoModelForCausalLM.from_config(model_config, torch_dtype=torch.float16)
    model.eval()

    started = time.monotonic()
    engine = deepspeed.init_inference(model, config=config)
    LOGGER.info(
        "Loaded %s with DeepSpeed inference on rank %d of %d in %.0f s",
        config["checkpoint"],
        local_rank,
        tensor_parallel_degree,
        time.monotonic() - started,
    )

    def broadcast_seed() -> int:
        seed = torch.tensor([random_seed()], dtype=torch.int64, device=torch.cuda.current_device())
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.broadcast(seed, src=0)
        return int(seed.item())

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return TransformersEngine(
        model=engine, tokenizer=tokenizer, device=torch.cuda.current_device(), seed_source=broadcast_seed
    )


def load_transformers_engine(properties: Mapping[str, str]) -> TransformersEngine:
    """Load the Hugging Face checkpoint in model_dir with transformers on one GPU, or on the CPU without one.

    NOTE: the GPU path has not run here (no GPU); the CPU path is the one local mode tests.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = properties["model_dir"]
    on_gpu = torch.cuda.is_available()
    dtype = getattr(torch, TORCH_DTYPES.get(properties.get("dtype", "fp16"), "float16")) if on_gpu else torch.float32
    device = "cuda:0" if on_gpu else "cpu"

    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).to(device)
    model.eval()
    LOGGER.info("Loaded %s with transformers on %s in %.0f s", model_dir, device, time.monotonic() - started)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return TransformersEngine(model=model, tokenizer=tokenizer, device=device)


# serving.properties dtype names and the torch dtypes they stand for.
TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}

ENGINE_LOADERS = {"deepspeed": load_deepspeed_engine, "transformers": load_transformers_engine}


def engine_loader_for(properties: Mapping[str, str]) -> Callable[[Mapping[str, str]], Any]:
    """Return the loader that option.engine_loader names (deepspeed when unset)."""
    name = properties.get("engine_loader", "deepspeed")
    if name not in ENGINE_LOADERS:
        raise ValueError(
            f"option.engine_loader={name!r} in serving.properties is invalid: allowed {', '.join(ENGINE_LOADERS)}"
        )
    return ENGINE_LOADERS[name]


# ---------------------------------------------------------------------------------------------------------------
# DJL Serving entry point.
# ---------------------------------------------------------------------------------------------------------------

_SERVICE: Optional[ModelService] = None


def handle(inputs: Any) -> Any:
    """Load the model on the first call, return None for DJL's empty warm-up call, and serve requests."""
    global _SERVICE
    if _SERVICE is None:
        properties = inputs.get_properties()
        _SERVICE = ModelService.from_properties(properties, engine_loader_for(properties))

    if inputs.is_empty():
        return None

    from djl_python.outputs import Output

    return _SERVICE.handle(inputs, Output)
