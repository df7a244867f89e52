"""Weight staging: copy a model repository from the Hugging Face Hub or a local directory into S3, verified.

The same code runs in the cloud (the CodeBuild job of the storage stack, ``python -m weights_staging.job``)
and locally (``bloomctl weights stage --local``). It needs only the standard library and boto3.
"""
