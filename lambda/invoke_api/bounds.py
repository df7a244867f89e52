"""Generation bounds of one deployment: what a request may ask of the profile's model.

The CDK app builds them from the model profile and passes them to the function as environment variables,
and the function reads them back once. Both directions live here, so the names cannot drift apart.
"""

import math
from dataclasses import dataclass
from typing import Mapping

from invoke_api.timeouts import max_new_tokens_for_budget


class SettingsError(ValueError):
    """An environment variable of the function is missing or invalid. The message names the variable."""


@dataclass(frozen=True)
class GenerationBounds:
    """Limits on one request, derived from the model profile and the timeout chain."""

    profile: str
    # Cap on new tokens per request: the profile's cap, lowered if needed to end within the time budget.
    max_new_tokens: int
    # Value sent to the container when a request does not set max_new_tokens.
    default_max_new_tokens: int
    # Prompt plus new tokens that the container holds for one request.
    max_total_tokens: int
    max_num_beams: int
    # Generation parameters that the profile's container accepts, in the public API's names.
    supported_parameters: tuple[str, ...]
    # Largest accepted request body in bytes. Larger bodies get a 413 before they are parsed.
    max_request_bytes: int
    seconds_per_token: float

    def to_environment(self) -> dict[str, str]:
        return {
            "PROFILE_NAME": self.profile,
            "MAX_NEW_TOKENS": str(self.max_new_tokens),
            "DEFAULT_MAX_NEW_TOKENS": str(self.default_max_new_tokens),
            "MAX_TOTAL_TOKENS": str(self.max_total_tokens),
            "MAX_NUM_BEAMS": str(self.max_num_beams),
            "SUPPORTED_PARAMETERS": ",".join(self.supported_parameters),
            "MAX_REQUEST_BYTES": str(self.max_request_bytes),
            "SECONDS_PER_TOKEN": str(self.seconds_per_token),
        }

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "GenerationBounds":
        bounds = cls(
            profile=_read_text(environ, "PROFILE_NAME"),
            max_new_tokens=_read_int(environ, "MAX_NEW_TOKENS"),
            default_max_new_tokens=_read_int(environ, "DEFAULT_MAX_NEW_TOKENS"),
            max_total_tokens=_read_int(environ, "MAX_TOTAL_TOKENS"),
            max_num_beams=_read_int(environ, "MAX_NUM_BEAMS"),
            supported_parameters=tuple(
                name.strip() for name in _read_text(environ, "SUPPORTED_PARAMETERS").split(",") if name.strip()
            ),
            max_request_bytes=_read_int(environ, "MAX_REQUEST_BYTES"),
            seconds_per_token=_read_float(environ, "SECONDS_PER_TOKEN"),
        )
        bounds.check()
        return bounds

    def check(self) -> None:
        """Raise ``SettingsError`` if the bounds contradict each other."""
        if not 1 <= self.default_max_new_tokens <= self.max_new_tokens < self.max_total_tokens:
            raise SettingsError(
                f"bounds of profile {self.profile} are inconsistent: expected 1 <= DEFAULT_MAX_NEW_TOKENS "
                f"({self.default_max_new_tokens}) <= MAX_NEW_TOKENS ({self.max_new_tokens}) < MAX_TOTAL_TOKENS "
                f"({self.max_total_tokens})"
            )
        if "max_new_tokens" not in self.supported_parameters:
            raise SettingsError(
                f"SUPPORTED_PARAMETERS={','.join(self.supported_parameters)!r} must include max_new_tokens, "
                "which the function always sends to bound the generation time"
            )


# Requests that do not set max_new_tokens get this many, or the cap if that is lower.
DEFAULT_MAX_NEW_TOKENS = 64

# Body size allowed per token of the profile's context. BLOOM's tokens average a few bytes of text, and 32 bytes per
# token leave room for scripts that take 3-4 bytes per character in UTF-8 and for JSON escapes.
REQUEST_BYTES_PER_TOKEN = 32


def bounds_for_profile(
    *,
    profile: str,
    max_new_tokens: int,
    max_total_tokens: int,
    max_num_beams: int,
    supported_parameters: tuple[str, ...],
    seconds_per_token: float,
) -> GenerationBounds:
    """Build the bounds of a profile: its cap on new tokens, lowered to what the time budget allows."""
    cap = min(max_new_tokens, max_new_tokens_for_budget(seconds_per_token), max_total_tokens - 1)
    bounds = GenerationBounds(
        profile=profile,
        max_new_tokens=cap,
        default_max_new_tokens=min(DEFAULT_MAX_NEW_TOKENS, cap),
        max_total_tokens=max_total_tokens,
        max_num_beams=max_num_beams,
        supported_parameters=tuple(supported_parameters),
        max_request_bytes=max_total_tokens * REQUEST_BYTES_PER_TOKEN,
        seconds_per_token=seconds_per_token,
    )
    bounds.check()
    return bounds


def _read_text(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is missing or empty")
    return value


def _read_int(environ: Mapping[str, str], name: str) -> int:
    return _read_number(environ, name, int, "a whole number of at least 1", lambda value: value >= 1)


def _read_float(environ: Mapping[str, str], name: str) -> float:
    return _read_number(environ, name, float, "a positive number", lambda value: math.isfinite(value) and value > 0)


def _read_number(environ: Mapping[str, str], name: str, parse, expected: str, is_valid) -> float:
    text = _read_text(environ, name)
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not is_valid(value):
        raise SettingsError(f"environment variable {name}={text!r} is invalid: expected {expected}")
    return value
