"""Unit tests of the container handler (model_artifacts/handler/model.py).

The handler runs here with a fake engine and fake djl_python Input/Output objects, without torch, DeepSpeed
or DJL Serving.
"""

import json
import logging
import sys
import types

import pytest

from local_mode.handler import load_model_handler, read_serving_properties

handler = load_model_handler()

# The example request of the original BLOOM-176B write-up, as the invoke Lambda passes it to the container.
WRITE_UP_PARAMETERS = {
    "min_length": 5,
    "max_new_tokens": 100,
    "temperature": 0.8,
    "num_beams": 5,
    "no_repeat_ngram_size": 2,
}
PROMPT = "The BLOOM large language model is a"


class FakeEngine:
    """Engine that counts one token per word and records every generate() call."""

    def __init__(self, completion=" helpful assistant.", generated_tokens=3, error=None):
        self.completion = completion
        self.generated_tokens = generated_tokens
        self.error = error
        self.calls = []

    def count_tokens(self, prompt):
        return len(prompt.split())

    def generate(self, prompt, generate_kwargs, seed):
        self.calls.append({"prompt": prompt, "generate_kwargs": generate_kwargs, "seed": seed})
        if self.error is not None:
            raise self.error
        return handler.GenerationResult(
            text=self.completion, prompt_tokens=self.count_tokens(prompt), generated_tokens=self.generated_tokens
        )


class FakeInput:
    """The parts of djl_python.inputs.Input that the handler uses."""

    def __init__(self, body=b"", properties=None):
        self.body = body
        self.properties = properties or {}

    def get_properties(self):
        return self.properties

    def is_empty(self):
        return not self.body

    def get_as_bytes(self):
        return self.body


class FakeOutput:
    """The parts of djl_python.outputs.Output that the handler uses."""

    def __init__(self, code=200, message="OK"):
        self.code = code
        self.message = message
        self.properties = {}
        self.json_content = []

    def add_property(self, key, value):
        self.properties[key] = value
        return self

    def add_as_json(self, value):
        self.json_content.append(json.loads(json.dumps(value)))
        return self


def request_body(prompt=PROMPT, **parameters):
    return json.dumps({"inputs": prompt, "parameters": parameters}).encode()


def make_service(engine=None, max_total_tokens=1024, max_num_beams=1):
    limits = handler.ServiceLimits(max_total_tokens=max_total_tokens, max_num_beams=max_num_beams)
    return handler.ModelService(engine or FakeEngine(), limits)


# ---- request parsing and parameter mapping ----


def test_write_up_example_maps_to_generate_kwargs():
    request = handler.parse_request(request_body(**WRITE_UP_PARAMETERS))

    assert request.prompt == PROMPT
    assert request.generate_kwargs == WRITE_UP_PARAMETERS
    assert request.seed is None
    assert request.stop == ()


def test_write_up_example_reaches_engine_unchanged():
    engine = FakeEngine()
    service = make_service(engine, max_num_beams=5)

    status, _ = service.invoke(request_body(**WRITE_UP_PARAMETERS))

    assert status == 200
    assert engine.calls[0]["generate_kwargs"] == WRITE_UP_PARAMETERS
    assert engine.calls[0]["prompt"] == PROMPT


def test_every_generate_parameter_passes_through():
    parameters = {
        "max_new_tokens": 20,
        "min_length": 3,
        "temperature": 1.3,
        "top_p": 0.9,
        "top_k": 40,
        "num_beams": 1,
        "no_repeat_ngram_size": 3,
        "repetition_penalty": 1.2,
        "do_sample": True,
    }

    request = handler.parse_request(request_body(**parameters))

    assert request.generate_kwargs == parameters


def test_seed_and_stop_stay_out_of_generate_kwargs():
    request = handler.parse_request(request_body(max_new_tokens=10, seed=42, stop=["\n", "###"]))

    assert request.generate_kwargs == {"max_new_tokens": 10}
    assert request.seed == 42
    assert request.stop == ("\n", "###")


def test_single_stop_string_becomes_tuple():
    request = handler.parse_request(request_body(stop="END"))

    assert request.stop == ("END",)


def test_missing_max_new_tokens_gets_default():
    request = handler.parse_request(json.dumps({"inputs": PROMPT}).encode())

    assert request.generate_kwargs == {"max_new_tokens": handler.DEFAULT_MAX_NEW_TOKENS}


def test_null_parameter_counts_as_unset():
    request = handler.parse_request(request_body(temperature=None, max_new_tokens=5))

    assert request.generate_kwargs == {"max_new_tokens": 5}


def test_integer_temperature_becomes_float():
    request = handler.parse_request(request_body(temperature=1))

    assert request.generate_kwargs["temperature"] == 1.0
    assert isinstance(request.generate_kwargs["temperature"], float)


@pytest.mark.parametrize(
    ("body", "expected_fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"", "must be a JSON object"),
        (b'["a prompt"]', "must be a JSON object"),
        (b'"a prompt"', "must be a JSON object"),
        (b"{}", 'missing "inputs"'),
        (b'{"inputs": ["a", "b"]}', "Batches are not supported"),
        (b'{"inputs": 42}', '"inputs" must be a string'),
        (b'{"inputs": ""}', '"inputs" is empty'),
        (b'{"inputs": "x", "parameters": [1]}', '"parameters" must be a JSON object'),
        (b'{"inputs": "x", "gen_kwargs": {}}', "unknown keys ['gen_kwargs']"),
    ],
)
def test_invalid_body_rejected(body, expected_fragment):
    with pytest.raises(handler.RequestError) as raised:
        handler.parse_request(body)

    assert raised.value.code == handler.INVALID_REQUEST
    assert expected_fragment in raised.value.message


def test_input_key_gets_hint_for_inputs():
    with pytest.raises(handler.RequestError) as raised:
        handler.parse_request(b'{"input": "The BLOOM model is"}')

    assert 'missing "inputs"' in raised.value.message
    assert 'the key is "inputs"' in raised.value.message


def test_unknown_parameter_lists_allowed_ones():
    with pytest.raises(handler.RequestError) as raised:
        handler.parse_request(request_body(num_return_sequences=2))

    assert "num_return_sequences" in raised.value.message
    for name in ("max_new_tokens", "temperature", "num_beams", "seed", "stop"):
        assert name in raised.value.message


@pytest.mark.parametrize(
    ("name", "value", "expected_fragment"),
    [
        ("max_new_tokens", 0, "out of range"),
        ("max_new_tokens", 10.5, "must be an integer"),
        ("max_new_tokens", "100", "must be an integer"),
        ("max_new_tokens", True, "must be an integer"),
        ("min_length", -1, "out of range"),
        ("temperature", 0, "out of range"),
        ("temperature", -0.5, "out of range"),
        ("temperature", "hot", "must be a number"),
        ("temperature", False, "must be a number"),
        ("top_p", 1.5, "out of range"),
        ("top_p", 0.0, "out of range"),
        ("top_k", -1, "out of range"),
        ("num_beams", 0, "out of range"),
        ("no_repeat_ngram_size", -2, "out of range"),
        ("repetition_penalty", 0, "out of range"),
        ("do_sample", "true", "must be true or false"),
        ("do_sample", 1, "must be true or false"),
        ("seed", -1, "out of range"),
        ("seed", 2**32, "out of range"),
        ("stop", "", "non-empty string"),
        ("stop", [1, 2], "non-empty string"),
        ("stop", ["a"] * 9, "at most 8"),
    ],
)
def test_invalid_parameter_rejected(name, value, expected_fragment):
    with pytest.raises(handler.RequestError) as raised:
        handler.parse_request(request_body(**{name: value}))

    assert raised.value.code == handler.INVALID_REQUEST
    assert f"parameters.{name}" in raised.value.message
    assert expected_fragment in raised.value.message


def test_non_finite_temperature_rejected():
    body = b'{"inputs": "x", "parameters": {"temperature": NaN}}'

    with pytest.raises(handler.RequestError) as raised:
        handler.parse_request(body)

    assert "parameters.temperature must be a number" in raised.value.message


# ---- limits ----


def test_token_cap_rejects_over_limit():
    service = make_service(max_total_tokens=1024)
    prompt = " ".join(["word"] * 1000)

    status, body = service.invoke(request_body(prompt, max_new_tokens=25))

    assert status == 400
    assert body["error"] == handler.TOKEN_LIMIT_EXCEEDED
    assert "1024 tokens" in body["message"]
    assert "1000 tokens" in body["message"]
    assert "max_new_tokens (25)" in body["message"]


def test_token_cap_allows_exactly_the_limit():
    engine = FakeEngine()
    service = make_service(engine, max_total_tokens=1024)
    prompt = " ".join(["word"] * 1000)

    status, _ = service.invoke(request_body(prompt, max_new_tokens=24))

    assert status == 200
    assert len(engine.calls) == 1


def test_token_cap_counts_default_max_new_tokens():
    service = make_service(max_total_tokens=100)
    prompt = " ".join(["word"] * (100 - handler.DEFAULT_MAX_NEW_TOKENS + 1))

    status, body = service.invoke(json.dumps({"inputs": prompt}).encode())

    assert status == 400
    assert body["error"] == handler.TOKEN_LIMIT_EXCEEDED


def test_rejected_request_never_reaches_engine():
    engine = FakeEngine()
    service = make_service(engine, max_total_tokens=10)

    service.invoke(request_body(" ".join(["word"] * 20), max_new_tokens=1))

    assert engine.calls == []


def test_beam_search_rejected_above_limit():
    service = make_service(max_num_beams=1)

    status, body = service.invoke(request_body(**WRITE_UP_PARAMETERS))

    assert status == 400
    assert body["error"] == handler.INVALID_REQUEST
    assert "num_beams=5" in body["message"]
    assert "at most 1 beam" in body["message"]


def test_limits_read_from_properties():
    limits = handler.ServiceLimits.from_properties({"max_tokens": "2048", "max_num_beams": "4"})

    assert limits.max_total_tokens == 2048
    assert limits.max_num_beams == 4


def test_limits_default_to_deepspeed_values():
    limits = handler.ServiceLimits.from_properties({})

    assert limits.max_total_tokens == 1024
    assert limits.max_num_beams == 1


@pytest.mark.parametrize("value", ["many", "0", "-5"])
def test_invalid_limit_property_fails_loading(value):
    with pytest.raises(ValueError, match=r"option\.max_tokens"):
        handler.ServiceLimits.from_properties({"max_tokens": value})


def test_int8_profile_properties_set_deepspeed_limits():
    properties = read_serving_properties("bloom-176b-int8")
    limits = handler.ServiceLimits.from_properties(properties)

    assert limits.max_total_tokens == 1024
    assert limits.max_num_beams == 1
    assert properties["entryPoint"] == "model.py"
    assert properties["tensor_parallel_degree"] == "8"
    assert properties["dtype"] == "int8"
    assert properties["checkpoint"] == "ds_inference_config.json"


# ---- response shape and errors ----


def test_response_has_completion_and_token_counts():
    service = make_service(FakeEngine(completion=" a model.", generated_tokens=2))

    status, body = service.invoke(request_body(max_new_tokens=10))

    assert status == 200
    assert body == {"generated_text": " a model.", "details": {"prompt_tokens": 7, "generated_tokens": 2}}


def test_stop_sequence_truncates_completion():
    service = make_service(FakeEngine(completion=" first line\nsecond line### more"))

    _, body = service.invoke(request_body(stop=["###", "\n"]))

    assert body["generated_text"] == " first line"


def test_stop_sequence_absent_keeps_completion():
    service = make_service(FakeEngine(completion=" no stop here"))

    _, body = service.invoke(request_body(stop=["###"]))

    assert body["generated_text"] == " no stop here"


def test_seed_reaches_engine():
    engine = FakeEngine()

    make_service(engine).invoke(request_body(do_sample=True, seed=7))

    assert engine.calls[0]["seed"] == 7


def test_engine_failure_returns_500():
    engine = FakeEngine(error=RuntimeError("CUDA out of memory"))

    status, body = make_service(engine).invoke(request_body(max_new_tokens=10))

    assert status == 500
    assert body["error"] == handler.GENERATION_FAILED
    assert "RuntimeError: CUDA out of memory" in body["message"]


def test_logs_never_contain_prompt_or_completion(caplog):
    secret_prompt = "my private medical question"
    secret_completion = " a private answer"
    caplog.set_level(logging.DEBUG)

    make_service(FakeEngine(completion=secret_completion)).invoke(request_body(secret_prompt))
    make_service(FakeEngine(error=RuntimeError("boom"))).invoke(request_body(secret_prompt))
    make_service().invoke(request_body(secret_prompt, num_beams=3))

    assert secret_prompt not in caplog.text
    assert secret_completion not in caplog.text
    assert "Generated 3 tokens after 4 prompt tokens" in caplog.text


# ---- DJL Serving entry point ----


@pytest.fixture
def djl_entry_point(monkeypatch):
    """The module-level handle() with a fake engine loader and a fake djl_python.outputs module."""
    loads = []

    def fake_loader(properties):
        loads.append(dict(properties))
        return FakeEngine()

    outputs_module = types.ModuleType("djl_python.outputs")
    outputs_module.Output = FakeOutput
    monkeypatch.setitem(sys.modules, "djl_python", types.ModuleType("djl_python"))
    monkeypatch.setitem(sys.modules, "djl_python.outputs", outputs_module)
    monkeypatch.setitem(handler.ENGINE_LOADERS, "deepspeed", fake_loader)
    monkeypatch.setitem(handler.ENGINE_LOADERS, "transformers", fake_loader)
    monkeypatch.setattr(handler, "_SERVICE", None)
    return loads


def test_warm_up_call_loads_model_and_returns_none(djl_entry_point):
    properties = {"model_dir": "/opt/ml/model", "tensor_parallel_degree": "8", "max_tokens": "1024"}

    result = handler.handle(FakeInput(properties=properties))

    assert result is None
    assert djl_entry_point == [properties]


def test_request_returns_json_output(djl_entry_point):
    handler.handle(FakeInput(properties={"max_tokens": "1024"}))

    output = handler.handle(FakeInput(body=request_body(max_new_tokens=10)))

    assert output.code == 200
    assert output.properties == {"content-type": "application/json"}
    assert output.json_content == [
        {"generated_text": " helpful assistant.", "details": {"prompt_tokens": 7, "generated_tokens": 3}}
    ]
    assert len(djl_entry_point) == 1


def test_invalid_request_returns_400_output(djl_entry_point):
    output = handler.handle(FakeInput(body=b'{"input": "hello"}'))

    assert output.code == 400
    assert output.message == handler.INVALID_REQUEST
    assert output.json_content[0]["error"] == handler.INVALID_REQUEST
    assert 'missing "inputs"' in output.json_content[0]["message"]


# ---- DeepSpeed configuration (the loader itself needs GPUs) ----


def test_deepspeed_config_loads_presharded_checkpoint(tmp_path):
    (tmp_path / "ds_inference_config.json").write_text("{}")
    properties = {
        "model_dir": str(tmp_path),
        "tensor_parallel_degree": "8",
        "dtype": "int8",
        "checkpoint": "ds_inference_config.json",
        "max_tokens": "1024",
    }

    config = handler.build_deepspeed_config(properties)

    assert config == {
        "tensor_parallel": {"tp_size": 8},
        "dtype": "int8",
        "checkpoint": str(tmp_path / "ds_inference_config.json"),
        "base_dir": str(tmp_path),
        "replace_with_kernel_inject": True,
        "max_tokens": 1024,
    }


def test_deepspeed_config_names_missing_checkpoint(tmp_path):
    (tmp_path / "BLOOM_ds-inference_config.json").write_text("{}")

    with pytest.raises(FileNotFoundError) as raised:
        handler.build_deepspeed_config({"model_dir": str(tmp_path), "checkpoint": "ds_inference_config.json"})

    assert "ds_inference_config.json" in str(raised.value)
    assert "BLOOM_ds-inference_config.json" in str(raised.value)
    assert "option.checkpoint" in str(raised.value)


def test_handler_imports_without_gpu_packages():
    """model.py must import where torch, deepspeed and djl_python are missing: they load lazily."""
    source = handler.__spec__.origin
    top_level_imports = [
        line for line in open(source, encoding="utf-8") if line.startswith(("import ", "from "))
    ]

    for line in top_level_imports:
        for package in ("torch", "deepspeed", "djl_python", "transformers"):
            assert package not in line


def test_engine_loader_defaults_to_deepspeed():
    assert handler.engine_loader_for({}) is handler.ENGINE_LOADERS["deepspeed"]


def test_engine_loader_selects_transformers():
    assert handler.engine_loader_for({"engine_loader": "transformers"}) is handler.ENGINE_LOADERS["transformers"]


def test_engine_loader_unknown_name_rejected():
    with pytest.raises(ValueError, match="option.engine_loader='vllm'"):
        handler.engine_loader_for({"engine_loader": "vllm"})


@pytest.mark.parametrize("profile", ["bloom-1b7", "bloom-7b1"])
def test_small_profiles_allow_write_up_beam_search(profile):
    properties = read_serving_properties(profile)

    assert properties["entryPoint"] == "model.py"
    assert properties["engine_loader"] == "transformers"
    assert int(properties["max_num_beams"]) >= WRITE_UP_PARAMETERS["num_beams"]
