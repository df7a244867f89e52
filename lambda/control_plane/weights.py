"""Seam to the weights manifest check, which the reconciler runs before every CreateEndpoint.

A start on missing or partial weights would fail only after SageMaker has billed the instances for the
whole start. The reconciler therefore does not start when ``check_weights(s3_client, bucket, prefix).ok`` is
false, and reports the result's message, which names the command that stages the weights.
"""

from weights_manifest.check import WeightsCheck, check_weights

__all__ = ["WeightsCheck", "check_weights"]
