"""The invoke Lambda function of the inference API: POST /generate and GET /status.

The modules other than ``handler`` import only the standard library, so that the CDK app can read the
request schema and the timeout chain at synth time without boto3 or Powertools.
"""
