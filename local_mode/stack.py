"""Start the whole request path of the API on 127.0.0.1: model, endpoint, invoke function and API front.

``start_local_stack`` loads the model into the profile's container handler, serves it as the deployment's
endpoint, runs the unchanged invoke function with the environment that the API stack gives it, and puts the
API front in front. ``bloomctl local serve`` is the command-line entry point.
"""

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from local_mode.api_front import ApiFront
from local_mode.config import LocalConfig, load_local_config
from local_mode.endpoint import RunningEndpoint, start_local_endpoint
from local_mode.engine import TINY_MODEL_SOURCE
from local_mode.handler import DEFAULT_PROFILE
from local_mode.invoke_function import LocalInvokeFunction, local_function_environment
from local_mode.model_server import DEFAULT_HOST, build_model_service
from local_mode.usage_plan import ApiKey, StageThrottle, UsagePlans, build_api_keys
from stacks.api_config import STAGE_NAME, STATUS_BURST_LIMIT, STATUS_RATE_LIMIT, invoke_function_environment
from stacks.invoke_api_package import openapi

LOGGER = logging.getLogger(__name__)


@dataclass
class LocalStack:
    """The running local stack. ``close`` stops every server and restores the process environment."""

    url: str
    config: LocalConfig
    api_keys: tuple[ApiKey, ...]
    endpoint: RunningEndpoint
    function: LocalInvokeFunction
    front: ApiFront
    model_source: str
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def model_running(self) -> bool:
        return self.endpoint.endpoint.in_service

    def stop_model(self) -> None:
        """Delete the endpoint, as a stop does: generation requests get the function's 503 until a start."""
        self.endpoint.endpoint.delete()

    def start_model(self) -> None:
        """Put the endpoint back in service. The model stayed loaded, so it serves at once."""
        self.endpoint.endpoint.create()

    def close(self) -> None:
        while self._closers:
            close = self._closers.pop()
            try:
                close()
            except Exception:
                LOGGER.exception("Stopping part of the local stack failed")
        LOGGER.info("Local stack stopped")


def start_local_stack(
    model_source: str = TINY_MODEL_SOURCE,
    *,
    profile: str = DEFAULT_PROFILE,
    port: int = 0,
    host: str = DEFAULT_HOST,
    context_overrides: Mapping[str, Any] | None = None,
    cdk_json: Path | None = None,
    api_key_values: Mapping[str, str] | None = None,
    stopped: bool = False,
    service: Any = None,
    cache_dir: Path | None = None,
) -> LocalStack:
    """Start the local stack and return it. ``port=0`` picks a free port for the API front.

    ``context_overrides`` work as ``cdk synth -c key=value``. ``api_key_values`` fixes the values of some keys
    by name, and the others get random values. ``stopped`` starts with the endpoint deleted. ``service``
    replaces the model with any object that has ``invoke(body) -> (status, payload)``.
    """
    config = load_local_config(profile, context_overrides, cdk_json)
    api_keys = build_api_keys(config.api.usage_plans, api_key_values)
    closers: list[Callable[[], None]] = []
    try:
        if service is None:
            service = build_model_service(model_source, profile=profile, cache_dir=cache_dir)
        endpoint = start_local_endpoint(service, config.deployment.endpoint_name, in_service=not stopped, host=host)
        closers.append(endpoint.stop)

        function = LocalInvokeFunction(
            function_name=f"{config.deployment.name_prefix}-invoke-api",
            environment=local_function_environment(
                invoke_function_environment(config.deployment, config.api), endpoint.runtime_url, endpoint.control_url
            ),
        )
        function.start()
        closers.append(function.close)

        front = _build_front(config, function, api_keys, host, port)
        thread = threading.Thread(target=front.serve_forever, kwargs={"poll_interval": 0.2}, name="local-api", daemon=True)
        thread.start()
        closers.append(lambda: _stop_front(front, thread))
    except BaseException:
        for close in reversed(closers):
            close()
        raise

    LOGGER.info("Local API of profile %s at %s", profile, front.url)
    return LocalStack(
        url=front.url,
        config=config,
        api_keys=api_keys,
        endpoint=endpoint,
        function=function,
        front=front,
        model_source=model_source,
        _closers=closers,
    )


def _build_front(
    config: LocalConfig, function: LocalInvokeFunction, api_keys: tuple[ApiKey, ...], host: str, port: int
) -> ApiFront:
    """Build the front with the usage plans, throttles and routes that the API stack gives the deployed stage."""
    api = config.api
    document = openapi.build_openapi(api.bounds, title="local", stage_name=STAGE_NAME)
    routes = [(method.upper(), path) for path, methods in document["paths"].items() for method in methods]
    return ApiFront(
        (host, port),
        function=function,
        usage_plans=UsagePlans(api.usage_plans, api_keys),
        stage_throttle=StageThrottle(
            api.rate_limit, api.burst_limit, {("/status", "GET"): (STATUS_RATE_LIMIT, STATUS_BURST_LIMIT)}
        ),
        stage_name=STAGE_NAME,
        routes=routes,
    )


def _stop_front(front: ApiFront, thread: threading.Thread) -> None:
    front.shutdown()
    front.server_close()
    thread.join(timeout=10)

