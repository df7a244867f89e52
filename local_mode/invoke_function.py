"""The invoke Lambda function (``invoke_api.handler.lambda_handler``, unchanged) run in this process.

The function gets the environment that the API stack gives it (``stacks.api_config.invoke_function_environment``),
plus what points its boto3 clients at the local endpoint: ``SAGEMAKER_RUNTIME_ENDPOINT_URL`` and
``SAGEMAKER_ENDPOINT_URL`` (read by ``invoke_api.settings``), a region and fake credentials. The handler
builds its clients once, on the first request, so the environment is in place before that request and
the handler's cached dependencies are cleared when it changes.

Environment variables belong to the process, so one process runs at most one local function at a time.

Lambda runs one request per execution environment. The handler keeps per-request state in module globals
(the Powertools resolver's current event, the logger's keys, the metrics), so this runs one execution
environment: requests reach the handler one at a time, in a single worker thread.
"""

import importlib
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# Importing the package puts lambda/ on sys.path, so that ``invoke_api`` imports as in the Lambda runtime.
from stacks.invoke_api_package import timeouts
from local_mode.model_server import LOCAL_ACCOUNT_ID, LOCAL_REGION

LOGGER = logging.getLogger(__name__)

HANDLER_MODULE = "invoke_api.handler"

# Memory size of the deployed function (the default of stacks/python_function.py). Only the logs show it.
MEMORY_LIMIT_MB = 256

# Credentials for the local servers, which ignore signatures. Set explicitly so that boto3 never looks
# further (shared files, a named profile, the instance metadata service) for real ones.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_SECURITY_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_DEFAULT_PROFILE": None,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}

_active_lock = threading.Lock()
_active_function: "LocalInvokeFunction | None" = None


class FunctionError(Exception):
    """The function raised an exception or returned something that is not a proxy response."""


class IntegrationTimedOut(Exception):
    """The function did not return within API Gateway's integration timeout."""


def local_function_environment(
    function_environment: Mapping[str, str], runtime_url: str, control_url: str
) -> dict[str, str | None]:
    """Add the endpoint URLs, region and credentials of local mode to the deployed function's environment.

    A value of None removes the variable.
    """
    return {
        **function_environment,
        "SAGEMAKER_RUNTIME_ENDPOINT_URL": runtime_url,
        "SAGEMAKER_ENDPOINT_URL": control_url,
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        **LOCAL_CREDENTIALS,
    }


@dataclass
class LocalLambdaContext:
    """The attributes of the Lambda context object that the handler and Powertools read."""

    function_name: str
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = MEMORY_LIMIT_MB

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class LocalInvokeFunction:
    """The invoke handler with its deployed environment, one execution environment, called with proxy events."""

    def __init__(self, function_name: str, environment: Mapping[str, str | None]) -> None:
        self.function_name = function_name
        self.environment = dict(environment)
        self.handler: Callable[[dict, Any], dict] | None = None
        self._saved_environment: dict[str, str | None] = {}
        self._worker: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Set the environment, load the handler and clear its cached clients."""
        global _active_function
        with _active_lock:
            if _active_function is not None:
                raise RuntimeError(
                    f"a local function ({_active_function.function_name}) already runs in this process: close it first"
                )
            _active_function = self

        self._saved_environment = {name: os.environ.get(name) for name in self.environment}
        try:
            _apply_environment(self.environment)
            module = importlib.import_module(HANDLER_MODULE)
            module.dependencies.cache_clear()
        except BaseException:
            self._release()
            raise
        self.handler = module.lambda_handler
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="invoke-function")

    def invoke(self, event: dict, wait_seconds: float = timeouts.INTEGRATION_TIMEOUT_SECONDS) -> dict:
        """Run the handler on a proxy event and return its response, waiting at most ``wait_seconds``.

        Raises ``IntegrationTimedOut`` when the wait runs out (the call keeps running, as a Lambda function
        does after API Gateway stops waiting) and ``FunctionError`` when the handler fails.
        """
        if self._worker is None:
            raise RuntimeError("the local function is not started")
        context = LocalLambdaContext(
            function_name=self.function_name,
            aws_request_id=str(uuid.uuid4()),
            deadline=time.monotonic() + timeouts.LAMBDA_TIMEOUT_SECONDS,
        )
        future = self._worker.submit(self.handler, event, context)
        try:
            response = future.result(timeout=wait_seconds)
        except FutureTimeoutError:
            raise IntegrationTimedOut(f"the function did not return within {wait_seconds:g} s") from None
        except Exception as error:
            LOGGER.exception("The invoke function raised %s (request %s)", type(error).__name__, context.aws_request_id)
            raise FunctionError(f"the function raised {type(error).__name__}") from error

        if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
            raise FunctionError("the function returned no proxy response with an integer statusCode")
        return response

    def close(self) -> None:
        """Stop the worker, restore the environment and clear the handler's cached clients."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None
        importlib.import_module(HANDLER_MODULE).dependencies.cache_clear()
        self._release()

    def _release(self) -> None:
        """Restore the environment and let another local function start in this process."""
        global _active_function
        _apply_environment(self._saved_environment)
        with _active_lock:
            if _active_function is self:
                _active_function = None


def _apply_environment(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
