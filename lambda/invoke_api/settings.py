"""The function's configuration, read once from its environment into a frozen dataclass."""

import os
from dataclasses import dataclass
from typing import Mapping

from invoke_api.bounds import GenerationBounds, SettingsError
from invoke_api.timeouts import SAGEMAKER_READ_TIMEOUT_SECONDS

__all__ = ["Settings", "SettingsError"]


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    bounds: GenerationBounds
    read_timeout_seconds: float
    region: str | None
    # Endpoint URLs that point the clients at local stand-ins (local mode, tests). None means AWS.
    runtime_endpoint_url: str | None
    sagemaker_endpoint_url: str | None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read the settings, or raise ``SettingsError`` naming the first missing or invalid variable."""
        environ = os.environ if environ is None else environ
        endpoint_name = environ.get("ENDPOINT_NAME", "").strip()
        if not endpoint_name:
            raise SettingsError("environment variable ENDPOINT_NAME is missing or empty")

        read_timeout_text = environ.get("SAGEMAKER_READ_TIMEOUT_SECONDS", str(SAGEMAKER_READ_TIMEOUT_SECONDS))
        try:
            read_timeout_seconds = float(read_timeout_text)
        except ValueError:
            read_timeout_seconds = -1.0
        if not 0 < read_timeout_seconds <= SAGEMAKER_READ_TIMEOUT_SECONDS:
            raise SettingsError(
                f"environment variable SAGEMAKER_READ_TIMEOUT_SECONDS={read_timeout_text!r} is invalid: expected a "
                f"number of seconds above 0 and at most {SAGEMAKER_READ_TIMEOUT_SECONDS}"
            )

        return cls(
            endpoint_name=endpoint_name,
            bounds=GenerationBounds.from_environment(environ),
            read_timeout_seconds=read_timeout_seconds,
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
            runtime_endpoint_url=environ.get("SAGEMAKER_RUNTIME_ENDPOINT_URL") or None,
            sagemaker_endpoint_url=environ.get("SAGEMAKER_ENDPOINT_URL") or None,
        )
