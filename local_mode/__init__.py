"""Local mode: the request path of the product on one machine, without AWS, on a small BLOOM.

``local_mode.model_server`` serves the container contract of ``model_artifacts/<profile>/model.py`` behind the
SageMaker runtime InvokeEndpoint protocol, with a transformers model on the CPU.
"""
