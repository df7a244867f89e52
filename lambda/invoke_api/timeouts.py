"""The timeout chain of the invoke path, with the reason for each number.

A request meets three clocks, from the inside out:

1. the sagemaker-runtime client waits at most ``CONNECT_TIMEOUT_SECONDS`` to connect and
   ``SAGEMAKER_READ_TIMEOUT_SECONDS`` for the model's response, and never retries,
2. the invoke Lambda function stops after ``LAMBDA_TIMEOUT_SECONDS``,
3. API Gateway stops waiting for the function after ``INTEGRATION_TIMEOUT_SECONDS``.

Each clock runs out before the next one, so the client gets the function's typed 504 (``generation_timeout``)
instead of API Gateway's bare "Endpoint request timed out". SageMaker's own limit (the container must respond
within 60 s) is never reached. boto3's defaults would be worse: a 60 s read timeout, and retries that send
a slow generation to the endpoint again after each timeout.
"""

# API Gateway REST APIs stop waiting for an integration after 29 s unless the account has a raised quota.
INTEGRATION_TIMEOUT_SECONDS = 29

# One second below the integration timeout, so the function's own error response still reaches API Gateway.
LAMBDA_TIMEOUT_SECONDS = 28

CONNECT_TIMEOUT_SECONDS = 2

# Connect plus read stay one second below the function timeout, which leaves time to build the response.
SAGEMAKER_READ_TIMEOUT_SECONDS = 25

# Part of the read timeout that goes to reading the prompt (prefill) and the network, not to new tokens.
# NOTE: an estimate. Reading a 1,000-token prompt should take BLOOM-176B well under a second on 8 x A100.
PROMPT_AND_NETWORK_SECONDS = 3


def generation_budget_seconds() -> float:
    """Return the time that token generation may take inside the read timeout."""
    return SAGEMAKER_READ_TIMEOUT_SECONDS - PROMPT_AND_NETWORK_SECONDS


def max_new_tokens_for_budget(seconds_per_token: float) -> int:
    """Return how many new tokens fit into the generation budget at the given generation speed."""
    if seconds_per_token <= 0:
        raise ValueError(f"seconds_per_token={seconds_per_token!r} is invalid: expected a positive number")
    return int(generation_budget_seconds() / seconds_per_token)


def check_timeout_chain() -> None:
    """Raise ``ValueError`` unless each clock of the chain runs out before the next one."""
    client_seconds = CONNECT_TIMEOUT_SECONDS + SAGEMAKER_READ_TIMEOUT_SECONDS
    if not client_seconds < LAMBDA_TIMEOUT_SECONDS < INTEGRATION_TIMEOUT_SECONDS:
        raise ValueError(
            f"timeout chain is inconsistent: connect + read ({client_seconds} s) < Lambda "
            f"({LAMBDA_TIMEOUT_SECONDS} s) < integration ({INTEGRATION_TIMEOUT_SECONDS} s) does not hold"
        )
